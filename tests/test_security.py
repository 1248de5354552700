"""Security guarantees: no remote code unless asked, no pickles for our own files.

- every ``from_pretrained`` call in ``cselab/`` passes ``trust_remote_code`` explicitly, as ``False`` or as
  the user's own argument (checked on the source, so a new call without it fails here), and
  :meth:`cselab.SentenceEncoder.from_pretrained` passes ``False`` unless the caller sets it;
- checkpoints are safetensors + JSON and are read without ``torch.load`` (no unpickling);
  ``tests/test_checkpoints.py::test_only_safetensors_and_json`` checks the files written;
- directories cselab writes (``save_sentence_transformer``, the trainer's ``best/``) hold
  ``model.safetensors``; a local directory with only pickled ``pytorch_model.bin`` weights still loads
  (many hub models ship only that) but warns, naming the directory and the conversion;
- API keys: ``cselab.llm_backends`` redacts them, see
  ``tests/test_llm_backends.py::test_unauthorized_is_not_retried_and_echoed_key_is_redacted`` and
  ``tests/test_llm_backends.py::test_generate_over_http_never_writes_or_logs_the_key``.
"""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
import torch

from cselab import SentenceEncoder
from cselab.encoders import tiny_bert

PACKAGE = Path(__file__).resolve().parents[1] / "cselab"


def from_pretrained_calls():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "from_pretrained":
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id in ("SentenceEncoder", "cls"):
                    continue  # our own loader, checked below
                yield path.relative_to(PACKAGE.parent), node


def test_every_transformers_from_pretrained_passes_trust_remote_code_explicitly():
    calls = list(from_pretrained_calls())
    assert len(calls) >= 8  # encoders (via kwargs), diffcse, declutr, llm_backends
    offenders = []
    for path, node in calls:
        keywords = {k.arg: k.value for k in node.keywords}
        if None in keywords:  # **kwargs: _load_hf builds them with the user's trust_remote_code
            continue
        value = keywords.get("trust_remote_code")
        ok = (isinstance(value, ast.Constant) and value.value is False) or \
             (isinstance(value, ast.Name) and value.id == "trust_remote_code")
        if not ok:
            offenders.append(f"{path}:{node.lineno}")
    assert not offenders, f"from_pretrained without trust_remote_code=False: {offenders}"




def test_sentence_encoder_passes_trust_remote_code_false_unless_asked(hf_dir, monkeypatch):
    import transformers

    seen = []
    for cls in (transformers.AutoModel, transformers.AutoTokenizer):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, **kwargs):
            seen.append(kwargs.get("trust_remote_code", "missing"))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    SentenceEncoder.from_pretrained(hf_dir)
    assert seen == [False, False]
    seen.clear()
    SentenceEncoder.from_pretrained(hf_dir, trust_remote_code=True)
    assert seen == [True, True]


def test_checkpoints_never_unpickle(tmp_path, monkeypatch):
    from cselab.checkpoints import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    ckpt = save_checkpoint(tmp_path, modules=model, optimizer=optimizer, scheduler=scheduler, step=1, epoch=0,
                           position=1)
    assert {p.suffix for p in ckpt.iterdir()} == {".safetensors", ".json"}

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint was read with torch.load / pickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr("pickle.load", forbidden)
    monkeypatch.setattr("pickle.loads", forbidden)
    load_checkpoint(ckpt, modules=model, optimizer=optimizer, scheduler=scheduler)


def test_directories_cselab_writes_are_safetensors(tmp_path, tiny_encoder):
    out = tiny_encoder.save_sentence_transformer(tmp_path / "st")
    files = {p.name for p in Path(out).rglob("*") if p.is_file()}
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own directories load without the pickle warning
        SentenceEncoder.from_pretrained(out)


def test_pickle_only_local_directory_warns_naming_it(tmp_path):
    path = tmp_path / "bin-only"
    model, tokenizer = tiny_bert(0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    for weights in path.glob("*.safetensors"):  # transformers 5 always writes safetensors: make a legacy dir
        weights.unlink()
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    with pytest.warns(UserWarning, match=rf"{path} has only pickled weights \(pytorch_model.bin\).*save_sentence_transformer"):
        SentenceEncoder.from_pretrained(path)
