"""Export to sentence-transformers (SentenceEncoder.save_sentence_transformer) and loading it back."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cselab import SentenceEncoder
from cselab.methods import SimCSE

SENTENCES = ["A man is playing a guitar .", "A woman slices an onion in the kitchen .", "Two dogs run .",
             "The cook eats some fruit at the beach .", "Someone is riding a horse on a beach at sunset ."]
OTHERS = ["A man plays music .", "A person cuts a vegetable .", "Animals are running .",
          "A chef has a snack by the sea .", "A rider is on the beach ."]
NEGATIVES = ["Nobody is making music .", "A woman is asleep .", "Two dogs sleep .",
             "The cook is in the office .", "A horse sleeps in a barn ."]


def trained(supervised: bool):
    """The tiny encoder and a SimCSE head after 2 training steps; returns (eval encoder, method)."""
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="cls")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        method = SimCSE(encoder.model.config.hidden_size, supervised=supervised)
        params = list(encoder.model.parameters()) + list(method.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        ids = {name: encoder.tokenize(sents)["input_ids"]
               for name, sents in (("sent0", SENTENCES), ("sent1", OTHERS), ("hard_neg", NEGATIVES))}
        encoder.train()
        for _ in range(2):
            method.loss(encoder, ids).backward()
            optimizer.step()
            optimizer.zero_grad()
    encoder.eval()
    return method.eval_encoder(encoder), method


@pytest.fixture(scope="module")
def unsup():
    return trained(False)


@pytest.fixture(scope="module")
def sup():
    return trained(True)


def st_encode(path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return model, torch.as_tensor(model.encode(SENTENCES, convert_to_numpy=True))


def assert_round_trip(encoder, path, atol=1e-5):
    """sentence-transformers and from_pretrained both give the encoder's embeddings."""
    want = encoder.encode(SENTENCES)
    model, got = st_encode(path)
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    loaded = SentenceEncoder.from_pretrained(path)
    torch.testing.assert_close(loaded.encode(SENTENCES), want, rtol=0, atol=atol)
    return model, loaded


def modules(path):
    return [m["type"].rsplit(".", 1)[-1] for m in json.loads((path / "modules.json").read_text())]


def test_unsup_export_drops_the_mlp(unsup, tmp_path):
    encoder, _ = unsup
    assert encoder.pooling == "cls_before_pooler" and encoder.projector is None
    path = encoder.save_sentence_transformer(tmp_path / "unsup")
    assert path == tmp_path / "unsup"
    assert modules(path) == ["Transformer", "Pooling"]
    assert not (path / "2_Dense").exists()
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] and not pooling["pooling_mode_mean_tokens"]
    model, loaded = assert_round_trip(encoder, path)
    assert model.max_seq_length == encoder.max_length
    assert loaded.pooling == "cls_before_pooler" and loaded.projector is None and not loaded.normalize


def test_sup_export_keeps_the_mlp_as_dense(sup, tmp_path):
    encoder, method = sup
    assert encoder.pooling == "cls" and encoder.projector is method.mlp
    path = encoder.save_sentence_transformer(tmp_path / "sup")
    assert modules(path) == ["Transformer", "Pooling", "Dense"]
    dense = load_file(str(path / "2_Dense" / "model.safetensors"))
    linear = method.mlp[0]
    assert set(dense) == {"linear.weight", "linear.bias"}
    assert torch.equal(dense["linear.weight"], linear.weight.detach())
    assert torch.equal(dense["linear.bias"], linear.bias.detach())
    config = json.loads((path / "2_Dense" / "config.json").read_text())
    assert config["activation_function"].endswith("Tanh")
    assert (config["in_features"], config["out_features"]) == tuple(linear.weight.shape[::-1])
    _, loaded = assert_round_trip(encoder, path)
    assert loaded.pooling == "cls" and loaded.projector is not None
    assert torch.equal(loaded.projector[0].weight, linear.weight.detach())
    assert isinstance(loaded.projector[1], torch.nn.Tanh)


def test_cls_without_projector_exports_the_pooler(tmp_path):
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="cls", seed=3)
    path = encoder.save_sentence_transformer(tmp_path / "cls")
    assert modules(path) == ["Transformer", "Pooling", "Dense"]
    dense = load_file(str(path / "2_Dense" / "model.safetensors"))
    assert torch.equal(dense["linear.weight"], encoder.model.pooler.dense.weight.detach())
    assert torch.equal(dense["linear.bias"], encoder.model.pooler.dense.bias.detach())
    _, loaded = assert_round_trip(encoder, path)
    assert loaded.pooling == "cls" and loaded.projector is not None


def test_avg_and_normalize_export(tmp_path):
    base = SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg", seed=4)
    path = base.save_sentence_transformer(tmp_path / "avg")
    assert modules(path) == ["Transformer", "Pooling"]
    assert json.loads((path / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    _, loaded = assert_round_trip(base, path)
    assert loaded.pooling == "avg"

    normalized = SentenceEncoder(base.model, base.tokenizer, "avg", normalize=True)
    path = normalized.save_sentence_transformer(tmp_path / "avg-normalized")
    assert modules(path) == ["Transformer", "Pooling", "Normalize"]
    _, loaded = assert_round_trip(normalized, path)
    assert loaded.normalize
    torch.testing.assert_close(loaded.encode(SENTENCES).norm(dim=-1), torch.ones(len(SENTENCES)))


@pytest.mark.parametrize("pooling", ["avg_first_last", "avg_top2", "last", "prompt"])
def test_layer_average_poolings_cannot_be_exported(tmp_path, pooling):
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling=pooling)
    with pytest.raises(ValueError, match=pooling):
        encoder.save_sentence_transformer(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_projector_other_than_linear_tanh_is_refused(tmp_path):
    model = SentenceEncoder.from_pretrained("cselab/tiny").model
    encoder = SentenceEncoder(model, SentenceEncoder.from_pretrained("cselab/tiny").tokenizer, "avg",
                              projector=torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.ReLU()))
    with pytest.raises(ValueError, match="Linear"):
        encoder.save_sentence_transformer(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_saving_over_an_existing_export_replaces_it(unsup, sup, tmp_path):
    path = tmp_path / "best"
    sup[0].save_sentence_transformer(path)
    assert (path / "2_Dense").is_dir()
    unsup[0].save_sentence_transformer(path)  # what the trainer does at every new best score
    assert not (path / "2_Dense").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temporary or old folders left
    assert_round_trip(unsup[0], path)


def test_failed_save_keeps_the_previous_export(unsup, sup, tmp_path, monkeypatch):
    path = tmp_path / "best"
    sup[0].save_sentence_transformer(path)
    before = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    encoder = unsup[0]

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(encoder.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        encoder.save_sentence_transformer(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    assert {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()} == before


def test_stale_old_folder_does_not_block_saving(unsup, tmp_path):
    path = tmp_path / "best"
    unsup[0].save_sentence_transformer(path)
    stale = tmp_path / ".best.old"  # left by a save that was killed between its two renames
    (stale / "1_Pooling").mkdir(parents=True)
    (stale / "modules.json").write_text("[]")
    unsup[0].save_sentence_transformer(path)
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_cls_without_pooler_is_a_clear_error(tmp_path):
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="cls")
    encoder.model.pooler = None
    with pytest.raises(ValueError, match="pooler"):
        encoder.save_sentence_transformer(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []
