"""cselab.methods.base: the method registry. Adding a method is one module plus its tests: here a toy
method (SimCSE without the MLP, ~30 lines) is registered in the test and trained through the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cselab import cli
from cselab.configs import resolve_config
from cselab.methods import METHOD_FIELDS, REGISTRY, build_method, method_names, register
from cselab.methods.base import unregister

pytestmark = pytest.mark.usefixtures("datasets_cache")  # conftest.py: a cache per module
TOY = "toy-simcse-no-mlp"


class NoMLPSimCSE(nn.Module):
    """Unsupervised SimCSE without the projection head: [x; x] in one pass, Eq. 1 on the pooled vectors."""

    columns = ("sent0",)

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def loss(self, encoder, rows: dict[str, list[list[int]]]) -> torch.Tensor:
        ids = rows["sent0"]
        z1, z2 = encoder(**encoder.collate(ids + ids)).split(len(ids))  # (B, H) twice: two dropout views
        logits = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / self.temperature  # (B, B)
        return F.cross_entropy(logits, torch.arange(len(ids), device=logits.device))

    def eval_encoder(self, encoder):
        return encoder


@pytest.fixture
def toy_method():
    @register(TOY, fields=("temperature",))
    def build(config, encoder):
        return NoMLPSimCSE(config.temperature)

    yield build
    unregister(TOY)


def test_course_methods_are_registered_with_their_fields():
    assert set(method_names()) == {"unsup-simcse", "sup-simcse", "esimcse", "diffcse", "declutr", "ngcse"}
    assert METHOD_FIELDS["esimcse"] == ("dup_rate", "queue_size", "momentum", "momentum_init")
    assert METHOD_FIELDS["unsup-simcse"] == () and METHOD_FIELDS["sup-simcse"] == ("hard_negative_weight",)


def test_a_taken_name_and_an_unknown_method_are_refused(toy_method):
    with pytest.raises(ValueError, match="already registered"):
        register("esimcse")(lambda config, encoder: None)
    with pytest.raises(ValueError, match="method='no-such-method'"):
        resolve_config("unsup-simcse-tiny", method="no-such-method")


def test_a_registered_toy_method_trains_through_the_cli(tmp_path, toy_method, capsys):
    assert TOY in REGISTRY and METHOD_FIELDS[TOY] == ("temperature",)
    out = tmp_path / "run"
    code = cli.main(["train", "--preset", "unsup-simcse-tiny", "--set", f"method={TOY}", "--set", "max_steps=3",
                     "--set", "eval_steps=3", "--set", "save_steps=3", "--output", str(out)])
    assert code in (0, None)
    saved = json.loads((out / "train_config.json").read_text("utf-8"))
    result = json.loads((out / "result.json").read_text("utf-8"))
    assert saved["method"] == TOY and result["steps"] == 3 and (out / "best").is_dir()
    assert "evaluation score" in capsys.readouterr().out
    config = resolve_config("unsup-simcse-tiny", method=TOY)
    assert isinstance(build_method(config, None), NoMLPSimCSE)  # the builder's own head


def test_method_base_class_defaults_and_hooks_for_plain_modules():
    from cselab.methods import Method
    from cselab.methods.base import hook

    class OnlyLoss(Method):
        def loss(self, encoder, rows):
            return torch.tensor(2.0)

    m, plain = OnlyLoss(), NoMLPSimCSE(0.05)
    assert m.columns == ("sent0",) and m.eval_encoder("enc") == "enc"
    assert m.prepare_dataset([1, 2], None) == [1, 2] and m.compose_batches([[0, 1]], None) == [[0, 1]]
    assert m.on_epoch_start(0) is None
    assert m.scale_for_world(torch.tensor(2.0), 4).item() == 8.0  # DeCLUTR's fix: loss x N processes
    # a plain nn.Module (the toy method) gets the same defaults through hook()
    assert hook(plain, "prepare_dataset")([3], None) == [3] and hook(plain, "on_epoch_start")(1) is None
    assert hook(plain, "scale_for_world")(torch.tensor(1.5), 2).item() == 3.0
    assert hook(plain, "tokenize_kwargs") is None and hook(plain, "keep_columns") == ()
    with pytest.raises(NotImplementedError, match="Method must define loss"):
        Method().loss(None, {})
