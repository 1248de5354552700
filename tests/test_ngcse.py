"""NGCSE's training head (cselab.methods.ngcse) against an independent transcription of the official code.

:func:`official_ng_forward` re-implements ``ngcse/models.py:_ng_forward`` with
``--use_native_loss --use_loss3`` as summarised in reference/methods.md §8.2-8.3: the aigen
groups ``(abs, K, L)`` and other pairs ``(obs, 2, L)`` flattened into one forward pass, the
embedding ``mlp(h)`` of ``[CLS]`` or of the ``[MASK]`` at ``sent_len - 2`` (PromptBERT template
inserted by hand from the tokenizer's tokens), ``F.cosine_similarity`` of broadcast
``(n,1,H) x (1,n,H)`` / temp with ``CrossEntropyLoss`` (loss1), and loss3's explicit loop over
adjacent levels. Nothing in it calls ``cselab.losses`` or ``NGCSE``. Comparisons run in eval mode
in float64, where the stacking order does not change any embedding.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cselab.methods.ngcse as ngcse_module
from cselab import SentenceEncoder
from cselab.encoders import PromptEncoder, tiny_bert
from cselab.methods import NGCSE
from cselab.methods.ngcse import LEVEL_COLUMNS, NLI_LEVEL_COLUMNS, freeze_embedding_layer

TAU = 0.05
MARGINS = (5e-3, 5e-2)
GROUPS = [  # (sentence, 5, 4, 3): positive, intermediate, negative
    ("A man is playing a guitar in the park .", "A guy strums a guitar at the park .",
     "A man is holding a guitar .", "Nobody is playing any instrument ."),
    ("Two dogs run across a wide green field .", "Dogs are running on grass .",
     "Two animals are outside .", "The dogs are sleeping indoors ."),
    ("The cat sleeps .", "A cat is asleep on the sofa .", "An animal rests .", "The cat is running ."),
    ("A woman is slicing an onion .", "Someone cuts an onion .", "A woman is cooking .",
     "A man is eating a sandwich in a car ."),
]
OTHERS = ["Children are playing football at the beach .", "Stocks fell sharply on Monday .",
          "The old pier was rebuilt last year ."]


# ----------------------------------------------------------------------------- fixtures
def _encoder(dtype=torch.float64, seed: int = 0) -> SentenceEncoder:
    model, tok = tiny_bert(seed)
    return SentenceEncoder(model.to(dtype).eval(), tok, "cls_before_pooler")


@pytest.fixture(scope="module")
def encoder64() -> SentenceEncoder:
    return _encoder()


def _rows(tok, groups, others, levels=LEVEL_COLUMNS):
    """Trainer-style rows: aigen groups first, then other rows whose level cells are empty (" ")."""
    k = 1 + len(levels)
    rows = {"sent0": tok([g[0] for g in groups] + list(others))["input_ids"]}
    for j, col in enumerate(levels, start=1):
        rows[col] = tok([g[j] for g in groups] + [" "] * len(others))["input_ids"]
    assert all(len(g) >= k for g in groups)
    return rows


def _head(encoder, seed: int = 1, **kwargs) -> NGCSE:
    torch.manual_seed(seed)
    kwargs.setdefault("freeze_embeddings", False)  # keep the shared fixture's weights trainable
    return NGCSE(encoder, temperature=TAU, margins=MARGINS, **kwargs).double()


# ----------------------------------------------------------------------------- reference
def _official_add_prompt(ids: list[int], tok, prefix_text: str) -> list[int]:
    """NGBert.add_prompt for one sentence: ids[:1] + prompt[0] + ids[1:len-1] + prompt[1] + ids[len-1:]."""
    p0 = tok(prefix_text, add_special_tokens=False)["input_ids"]
    p1 = tok('" means', add_special_tokens=False)["input_ids"] + [tok.mask_token_id]
    return ids[:1] + p0 + ids[1:len(ids) - 1] + p1 + ids[len(ids) - 1:]


def _pad(seqs: list[list[int]], pad_id: int):
    longest = max(len(x) for x in seqs)
    input_ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, x in enumerate(seqs):
        input_ids[i, :len(x)] = torch.tensor(x)
        attention_mask[i, :len(x)] = 1
    return input_ids, attention_mask


def official_ng_forward(bert, mlp: nn.Linear | None, tok, aigen: list[list[list[int]]], other: list[list[int]],
                        pooler_type: str, temp: float, margins, beta: float = 1.0, pos_idx: int | None = None):
    """ngcse/models.py:_ng_forward (use_native_loss, use_loss3), one process. Returns (loss, loss1, loss3)."""
    abs_, asn = len(aigen), (len(aigen[0]) if aigen else 0)
    obs, osn = len(other), 2
    seqs = [s for group in aigen for s in group]  # input_ids[0].reshape(-1, L): example-major
    prefixes = ['This sentence : "'] * len(seqs)
    for x in other:  # other rows: the sentence duplicated, prompt[idx1] for the 2 views
        seqs += [x, x]
        prefixes += ['This sentence : "', 'This sentence of "']
    if pooler_type == "mask":
        seqs = [_official_add_prompt(x, tok, p) for x, p in zip(seqs, prefixes)]
    input_ids, attention_mask = _pad(seqs, tok.pad_token_id)
    outputs = bert(input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids),
                   output_hidden_states=True, return_dict=True)
    last_hidden = outputs.last_hidden_state
    if pooler_type == "cls":
        h = last_hidden[:, 0]
    else:  # 'mask' in pooler_type: last_hidden[idx][sent_len[idx] - 2]
        sent_len = attention_mask.sum(dim=-1)
        h = torch.stack([last_hidden[i][sent_len[i] - 2] for i in range(last_hidden.shape[0])])
    embedding = h @ mlp.weight.T + mlp.bias  # self.mlp = nn.Linear(H, feature_size), no activation
    aigen_h = embedding[:abs_ * asn].reshape(abs_, asn, embedding.shape[-1])
    other_h = embedding[abs_ * asn:].reshape(obs, osn, embedding.shape[-1])
    aigen_pos_idx = pos_idx if pos_idx is not None else (2 if asn > 3 else 1)
    embeds_0 = torch.cat(([other_h[:, :1]] if osn else []) + ([aigen_h[:, :1]] if asn else []), dim=0)
    embeds_1 = torch.cat(([other_h[None, :, 1]] if osn else []) + ([aigen_h[None, :, aigen_pos_idx]] if asn else []),
                         dim=1)  # use_loss3: the last level is not a candidate
    similarity = F.cosine_similarity(embeds_0, embeds_1, dim=-1)  # (n, n)
    labels = torch.arange(similarity.shape[0])
    loss1 = nn.CrossEntropyLoss()(similarity / temp, labels)
    loss3 = None
    if abs_ > 0:
        levels_sim = torch.stack([F.cosine_similarity(aigen_h[:, 0], aigen_h[:, lv], dim=-1)
                                  for lv in range(1, asn)], dim=-1)
        loss3 = torch.tensor(0.0, dtype=similarity.dtype)
        if asn - 2:
            for idx in range(0, asn - 2):
                m = margins[idx if idx < len(margins) else len(margins) - 1]
                loss3 = loss3 + F.relu(levels_sim[:, idx + 1] - levels_sim[:, idx] + m).mean()
            loss3 = loss3 / (asn - 2)
    loss = loss1 + (beta * loss3 if loss3 is not None else 0.0)  # beta2 = 0 with use_native_loss
    return loss, loss1, (loss3 if loss3 is not None else torch.tensor(0.0, dtype=similarity.dtype))


def _official(encoder, head: NGCSE, groups, others, levels=LEVEL_COLUMNS, pos_idx=None, beta=1.0):
    tok = encoder.tokenizer
    k = 1 + len(levels)
    aigen = [[tok(g[j])["input_ids"] for j in range(k)] for g in groups]
    other = [tok(s)["input_ids"] for s in others]
    return official_ng_forward(encoder.model, head.head, tok, aigen, other, head.pooler_type, TAU, MARGINS,
                               beta=beta, pos_idx=pos_idx)


# ----------------------------------------------------------------------------- loss vs official
CASES = {  # name -> (groups, others, levels)
    "k4_mixed": (GROUPS, OTHERS, LEVEL_COLUMNS),
    "k4_aigen_only": (GROUPS, [], LEVEL_COLUMNS),
    "k4_other_only": ([], OTHERS, LEVEL_COLUMNS),
    "k3_nli_mixed": ([g[:3] for g in GROUPS], OTHERS, NLI_LEVEL_COLUMNS),
    "k3_nli_aigen_only": ([g[:3] for g in GROUPS], [], NLI_LEVEL_COLUMNS),
}


@pytest.mark.parametrize("pooler_type", ["cls", "mask"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_official_ng_forward(encoder64, case, pooler_type):
    groups, others, levels = CASES[case]
    head = _head(encoder64, levels=levels, pooler_type=pooler_type)
    rows = _rows(encoder64.tokenizer, groups, others, levels)
    with torch.no_grad():
        got = head.parts(encoder64, rows)
        want, want1, want3 = _official(encoder64, head, groups, others, levels)
    assert got["loss"].dtype == torch.float64
    assert got["infonce"].item() == pytest.approx(want1.item(), rel=1e-8, abs=1e-10)
    assert got["ht"].item() == pytest.approx(want3.item(), rel=1e-8, abs=1e-10)
    assert got["loss"].item() == pytest.approx(want.item(), rel=1e-8, abs=1e-10)
    assert head.loss(encoder64, rows).item() == pytest.approx(want.item(), rel=1e-8, abs=1e-10)
    if groups and len(levels) >= 2:
        assert want3.item() > 0  # an untrained encoder violates the hierarchy: the HT term is exercised


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_combined_is_infonce_plus_beta_ht(encoder64, beta):
    rows = _rows(encoder64.tokenizer, GROUPS, OTHERS)
    head = _head(encoder64, beta=beta)
    with torch.no_grad():
        parts = head.parts(encoder64, rows)
        _, want1, want3 = _official(encoder64, head, GROUPS, OTHERS, beta=beta)
    assert parts["infonce"].item() == pytest.approx(want1.item(), rel=1e-8)
    assert parts["ht"].item() == pytest.approx(want3.item(), rel=1e-8)
    assert parts["loss"].item() == pytest.approx(want1.item() + beta * want3.item(), rel=1e-8)


def test_default_positive_is_level_index_2_for_k4_and_1_for_k3(encoder64):
    assert _head(encoder64).positive_index == 2  # '4', the intermediate level (reference §14 item 7)
    assert _head(encoder64, levels=NLI_LEVEL_COLUMNS).positive_index == 1
    assert _head(encoder64, levels=("a", "b", "c", "d")).positive_index == 2


@pytest.mark.parametrize("pos_idx", [1, 3])
def test_positive_index_parameter_matches_official_with_that_index(encoder64, pos_idx):
    rows = _rows(encoder64.tokenizer, GROUPS, OTHERS)
    head = _head(encoder64, positive_index=pos_idx)
    with torch.no_grad():
        got = head.parts(encoder64, rows)["infonce"]
        _, want1, _ = _official(encoder64, head, GROUPS, OTHERS, pos_idx=pos_idx)
        _, default1, _ = _official(encoder64, head, GROUPS, OTHERS)
    assert got.item() == pytest.approx(want1.item(), rel=1e-8)
    assert abs(got.item() - default1.item()) > 1e-6  # the positive matters


def test_gradients_match_official(encoder64):
    rows = _rows(encoder64.tokenizer, GROUPS, OTHERS)
    head = _head(encoder64, pooler_type="mask")
    params = [head.head.weight, encoder64.model.encoder.layer[0].attention.self.query.weight]
    got = torch.autograd.grad(head.loss(encoder64, rows), params)
    want = torch.autograd.grad(_official(encoder64, head, GROUPS, OTHERS)[0], params)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-7, atol=1e-12) and w.abs().max() > 0


# ----------------------------------------------------------------------------- views and pooling
def _capture_inputs(model):
    calls = []
    handle = model.register_forward_hook(lambda m, a, kw, o: calls.append(
        (kw["input_ids"].clone(), kw["attention_mask"].clone(), o.last_hidden_state.detach().clone())),
        with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("pooler_type", ["cls", "mask", "avg"])
def test_one_forward_pass_over_all_views(encoder64, pooler_type):
    rows = _rows(encoder64.tokenizer, GROUPS, OTHERS)
    head = _head(encoder64, pooler_type=pooler_type)
    calls, handle = _capture_inputs(encoder64.model)
    try:
        with torch.no_grad():
            head.loss(encoder64, rows)
    finally:
        handle.remove()
    assert len(calls) == 1 and calls[0][0].shape[0] == 4 * len(GROUPS) + 2 * len(OTHERS)


def test_mask_pooling_picks_the_mask_position(encoder64):
    tok = encoder64.tokenizer
    rows = _rows(tok, GROUPS, OTHERS)
    head = _head(encoder64, pooler_type="mask")
    head_in = []
    hook = head.head.register_forward_hook(lambda m, i, o: head_in.append(i[0].detach().clone()))
    calls, handle = _capture_inputs(encoder64.model)
    try:
        with torch.no_grad():
            head.loss(encoder64, rows)
    finally:
        handle.remove()
        hook.remove()
    input_ids, attention_mask, hidden = calls[0]
    pooled = head_in[0]  # what went into the Linear head
    mask_id = tok.mask_token_id
    for r in range(input_ids.shape[0]):
        where = (input_ids[r] == mask_id).nonzero().flatten().tolist()
        assert where == [int(attention_mask[r].sum()) - 2]  # exactly one [MASK], just before [SEP]
        assert torch.equal(pooled[r], hidden[r, where[0]])
    # sequences: aigen groups (template ':'), then each other row as (':' view, 'of' view)
    colon = tok(":", add_special_tokens=False)["input_ids"][0]
    of = tok("of", add_special_tokens=False)["input_ids"][0]
    n_a = 4 * len(GROUPS)
    third = input_ids[:, 4]  # [CLS] this sent ##ence <:|of> (the tiny vocabulary splits "sentence")
    assert (third[:n_a] == colon).all()
    assert (third[n_a::2] == colon).all() and (third[n_a + 1::2] == of).all()
    no_pair = _head(encoder64, pooler_type="mask", pair_template=False)
    calls, handle = _capture_inputs(encoder64.model)
    try:
        with torch.no_grad():
            no_pair.loss(encoder64, rows)
    finally:
        handle.remove()
    assert (calls[0][0][:, 4] == colon).all()


def test_dropout_gives_two_different_views_of_other_rows():
    encoder = _encoder()
    rows = _rows(encoder.tokenizer, [], OTHERS)
    head = _head(encoder)
    out = []
    hook = head.head.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    encoder.train()
    torch.manual_seed(0)
    try:
        head.loss(encoder, rows)
    finally:
        hook.remove()
    z = out[0].reshape(len(OTHERS), 2, -1)
    assert (z[:, 0] - z[:, 1]).abs().max() > 1e-4


# ----------------------------------------------------------------------------- head, freezing, eval encoders
def test_head_is_a_bare_linear_with_normal_6e3_weight_and_bias():
    model, tok = tiny_bert(0)
    model.config.hidden_size = 768  # the head is sized from the config: 589,824 draws for a tight estimate
    torch.manual_seed(0)
    head = NGCSE(SentenceEncoder(model, tok, "avg"), freeze_embeddings=False).head
    assert type(head) is nn.Linear and (head.in_features, head.out_features) == (768, 768)
    w, b = head.weight.detach().double(), head.bias.detach().double()
    assert w.std().item() == pytest.approx(6e-3, rel=0.01) and abs(w.mean().item()) < 1e-4
    assert b.std().item() == pytest.approx(6e-3, rel=0.1) and torch.count_nonzero(b) == 768  # bias too, not zeros
    assert w.abs().max().item() > 4 * 6e-3  # normal, not uniform
    assert NGCSE(SentenceEncoder(model, tok, "avg"), pooler_type="avg", freeze_embeddings=False).head is None


def test_freeze_embeddings_freezes_exactly_the_embedding_layer():
    encoder = _encoder(torch.float32)
    head = NGCSE(encoder)  # official default: frozen
    frozen = {n for n, p in encoder.model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in encoder.model.named_parameters() if n.startswith("embeddings.")}
    assert {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
            "embeddings.LayerNorm.bias"} <= frozen
    assert all(p.requires_grad for p in head.parameters())
    rows = _rows(encoder.tokenizer, GROUPS, OTHERS)
    head.loss(encoder, rows).backward()
    assert encoder.model.embeddings.word_embeddings.weight.grad is None
    assert encoder.model.encoder.layer[0].attention.self.query.weight.grad.abs().max() > 0
    # what the trainer optimises: requires_grad only
    optimised = {id(p) for p in list(encoder.model.parameters()) + list(head.parameters()) if p.requires_grad}
    assert id(encoder.model.embeddings.word_embeddings.weight) not in optimised
    assert id(head.head.weight) in optimised
    fresh = _encoder(torch.float32)
    NGCSE(fresh, freeze_embeddings=False)
    assert all(p.requires_grad for p in fresh.model.parameters())


def test_freeze_needs_an_embeddings_module():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"hidden_size": 8})()

    _, tok = tiny_bert(0)
    with pytest.raises(ValueError, match="freeze_embeddings=False"):
        freeze_embedding_layer(SentenceEncoder(Bare(), tok, "avg"))


def test_eval_encoder_mask_is_raw_mask_state_without_head(encoder64):
    head = _head(encoder64, pooler_type="mask")
    ev = head.eval_encoder(encoder64)
    assert isinstance(ev, PromptEncoder) and ev.projector is None and ev.model is encoder64.model
    assert ev.template is head.template
    tok = encoder64.tokenizer
    got = ev.encode([g[0] for g in GROUPS])
    for i, g in enumerate(GROUPS):
        wrapped = _official_add_prompt(tok(g[0])["input_ids"], tok, 'This sentence : "')
        with torch.no_grad():
            hidden = encoder64.model(input_ids=torch.tensor([wrapped]), return_dict=True).last_hidden_state[0]
        assert torch.allclose(got[i], hidden[len(wrapped) - 2].float(), atol=1e-6)


@pytest.mark.parametrize("pooler_type,pooling", [("cls", "cls_before_pooler"), ("avg", "avg"),
                                                 ("avg_first_last", "avg_first_last")])
def test_eval_encoder_other_poolers(encoder64, pooler_type, pooling):
    ev = _head(encoder64, pooler_type=pooler_type).eval_encoder(encoder64)
    assert type(ev) is SentenceEncoder and ev.pooling == pooling and ev.projector is None
    assert ev.model is encoder64.model


def test_columns_and_row_split(encoder64):
    assert _head(encoder64).columns == ("sent0", "level5", "level4", "level3")
    assert _head(encoder64, levels=NLI_LEVEL_COLUMNS).columns == ("sent0", "level5", "level4")
    tok = encoder64.tokenizer
    rows = _rows(tok, GROUPS[:2], OTHERS[:2])
    rows["level5"][3] = tok("")["input_ids"]  # "" and " " both mean absent
    assert _head(encoder64).split_rows(rows) == ([0, 1], [2, 3])
    unsup = _head(encoder64, levels=())
    assert unsup.columns == ("sent0",) and unsup.positive_index is None
    assert unsup.split_rows({"sent0": rows["sent0"]}) == ([], [0, 1, 2, 3])
    with torch.no_grad():  # unsupervised rows only: InfoNCE over dropout pairs, no HT term
        parts = unsup.parts(encoder64, {"sent0": rows["sent0"]})
    assert parts["ht"].item() == 0.0 and parts["loss"].item() == parts["infonce"].item()


def test_blank_cells_stay_empty_for_a_byte_level_bpe_tokenizer(tmp_path):
    """RoBERTa's (and SmolLM2's) tokenizer writes the trainer's " " for a missing cell as a space token,
    not as special tokens only. Such rows are still unsupervised pairs, and SNLI triplets stay K = 3 groups
    whose InfoNCE positive is the entailment (level '5'), not the contradiction."""
    import sys
    from pathlib import Path

    import datasets

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import hub_standins

    encoder = SentenceEncoder.from_pretrained(str(hub_standins.write_standin(tmp_path / "roberta", "roberta")),
                                              pooling="avg")
    tok = encoder.tokenizer
    assert [t for t in tok(" ")["input_ids"] if t not in tok.all_special_ids], "the case under test: a space token"
    head = NGCSE(encoder, pooler_type="avg", freeze_embeddings=False)
    assert head.split_rows(_rows(tok, GROUPS[:2], OTHERS[:2])) == ([0, 1], [2, 3])
    triplets = _rows(tok, [g[:3] for g in GROUPS], [], NLI_LEVEL_COLUMNS)
    triplets["level3"] = tok([" "] * len(GROUPS))["input_ids"]  # what the trainer makes of the absent column
    head.prepare_dataset(datasets.Dataset.from_dict(triplets))
    assert (head.levels, head.k, head.positive_index) == (NLI_LEVEL_COLUMNS, 3, 1)
    sentences = {"sent0": tok(OTHERS)["input_ids"], **{c: tok([" "] * len(OTHERS))["input_ids"] for c in LEVEL_COLUMNS}}
    unsup = NGCSE(encoder, pooler_type="avg", freeze_embeddings=False)
    unsup.prepare_dataset(datasets.Dataset.from_dict(sentences))
    assert unsup.levels == () and unsup.split_rows({"sent0": sentences["sent0"]}) == ([], [0, 1, 2])


def test_k2_groups_have_no_ht_term(encoder64):
    head = _head(encoder64, levels=("level5",))
    rows = _rows(encoder64.tokenizer, [g[:2] for g in GROUPS], OTHERS, ("level5",))
    with torch.no_grad():
        parts = head.parts(encoder64, rows)
    assert head.positive_index == 1 and parts["ht"].item() == 0.0


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs,exc,match", [
    ({"pooler_type": "mean"}, ValueError, r"pooler_type='mean'.*mask"),
    ({"levels": "level5"}, TypeError, "not the string"),
    ({"levels": ("level5", "level5")}, ValueError, "distinct"),
    ({"levels": ("sent0", "level5")}, ValueError, "other than 'sent0'"),
    ({"positive_index": 0}, ValueError, r"in 1\.\.3"),
    ({"positive_index": 4}, ValueError, r"in 1\.\.3"),
    ({"levels": (), "positive_index": 1}, ValueError, "needs graded levels"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"beta": -1.0}, ValueError, "beta"),
    ({"beta": float("nan")}, ValueError, "beta"),
    ({"margins": ()}, ValueError, "margins"),
    ({"margins": (0.1, -0.2)}, ValueError, "margins"),
    ({"head_std": 0.0}, ValueError, "head_std"),
])
def test_bad_arguments(encoder64, kwargs, exc, match):
    kwargs = {"freeze_embeddings": False, **kwargs}
    with pytest.raises(exc, match=match):
        NGCSE(encoder64, **kwargs)


def test_bad_rows(encoder64):
    head = _head(encoder64)
    tok = encoder64.tokenizer
    rows = _rows(tok, GROUPS[:2], OTHERS[:1])
    with pytest.raises(ValueError, match=r"lacks \['level3'\]"):
        head.loss(encoder64, {k: v for k, v in rows.items() if k != "level3"})
    mixed = dict(rows, level4=list(rows["level4"]))
    mixed["level4"][1] = tok(" ")["input_ids"]
    with pytest.raises(ValueError, match=r"row 1: levels \['level4'\] are empty"):
        head.loss(encoder64, mixed)
    with pytest.raises(ValueError, match="empty batch"):
        head.loss(encoder64, {c: [] for c in head.columns})
    with pytest.raises(ValueError, match="one entry per row"):
        head.loss(encoder64, dict(rows, level5=rows["level5"][:1]))


def test_mask_pooling_refuses_inputs_longer_than_the_model(encoder64):
    head = _head(encoder64, pooler_type="mask")
    long_ids = [encoder64.tokenizer("word " * 600, truncation=True, max_length=encoder64.max_length)["input_ids"]]
    with pytest.raises(ValueError, match="lower max_length"):
        head.loss(encoder64, {"sent0": long_ids, "level5": long_ids, "level4": long_ids, "level3": long_ids})


def test_no_multi_process_path(encoder64, monkeypatch):
    monkeypatch.setattr(ngcse_module.dist_utils, "world_size", lambda: 2)
    with pytest.raises(NotImplementedError, match="one process"):
        _head(encoder64).loss(encoder64, _rows(encoder64.tokenizer, GROUPS, OTHERS))


# ----------------------------------------------------------------------------- with the trainer
@pytest.mark.parametrize("pooler_type", ["mask"])
def test_trains_with_the_generic_trainer(tmp_path, monkeypatch, pooler_type):
    """Two steps of cselab.train with method=NGCSE: frozen embeddings stay put, the rest moves, and
    the best model reloads as the evaluation encoder (a PromptEncoder for mask pooling)."""
    import csv

    import datasets.config

    from cselab.configs import resolve_config
    from cselab.methods.ngcse import RFD_TERMS, rfd_from_history, rfd_tracker
    from cselab.train import train

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    data = tmp_path / "ngcse.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "level5", "level4", "level3"])
        writer.writerows(GROUPS)
        writer.writerows([[s, "", "", ""] for s in OTHERS])
    config = resolve_config("sup-simcse-tiny", train_file=str(data), batch_size=4, max_steps=2, eval_steps=2,
                            save_steps=2, log_steps=1, learning_rate=1e-3)
    encoder = SentenceEncoder.from_pretrained("cselab/tiny", pooling="cls_before_pooler", seed=0)
    method = NGCSE(encoder, pooler_type=pooler_type)
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    held_out = [(g[0], g[2]) for g in GROUPS]  # STS_HT aligns on '4'
    result = train(config, tmp_path / "run", encoder=encoder, method=method, progress=False,
                   extra_metrics=rfd_tracker(held_out, [(s, s) for s in OTHERS], max_sentences=1000))
    after = dict(encoder.model.named_parameters())
    for name, p in after.items():
        if name.startswith("embeddings."):
            assert torch.equal(p.detach(), before[name]), name
    assert not torch.equal(after["encoder.layer.0.attention.self.query.weight"].detach(),
                           before["encoder.layer.0.attention.self.query.weight"])
    assert all(set(RFD_TERMS) <= set(r) for r in result.history if "eval_score" in r)
    assert rfd_from_history(result.history)["n_steps"] == 1
    best = SentenceEncoder.from_pretrained(result.best_dir)
    assert isinstance(best, PromptEncoder)
    want = method.eval_encoder(encoder).encode(OTHERS) if result.best_step == 2 else None
    if want is not None:
        assert torch.allclose(best.encode(OTHERS), want, atol=1e-5)
    assert math.isfinite(result.final_score)


# ------------------------------------------------------------------ batch composition (official collator, §8.1)
def test_compose_holds_generated_groups_until_enough_are_cached():
    from cselab.methods.ngcse import compose_aigen_batches

    drawn = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13]]  # what a sampler drew for 4 steps
    aigen = {1, 2, 5, 8, 9, 10, 12}
    is_aigen = [i in aigen for i in range(14)]
    # by hand, aigen_batch_size 3: step 0 caches 1, 2 and sends 0, 3; step 1 reaches 3 cached -> 1, 2, 5 with
    # 4, 6, 7; step 2 has 3 new ones -> 8, 9, 10 with 11; the last step sends what is left (12) with 13.
    assert compose_aigen_batches(drawn, is_aigen, 3) == [[0, 3], [1, 2, 5, 4, 6, 7], [8, 9, 10, 11], [12, 13]]
    # aigen_batch_size 4: 1, 2, 5 wait through step 1 and go with 8, 9, 10 at step 2
    assert compose_aigen_batches(drawn, is_aigen, 4) == [[0, 3], [4, 6, 7], [1, 2, 5, 8, 9, 10, 11], [12, 13]]
    # 0 or 1: every batch as drawn, generated groups first (the official order)
    assert compose_aigen_batches(drawn, is_aigen, 1) == [[1, 2, 0, 3], [5, 4, 6, 7], [8, 9, 10, 11], [12, 13]]
    with pytest.raises(ValueError, match=r"step 0 .* would be empty.*batch_size >= aigen_batch_size"):
        compose_aigen_batches([[1, 2], [5, 8]], is_aigen, 5)


def test_trainer_sends_generated_groups_in_blocks_of_at_least_aigen_batch_size(tmp_path, monkeypatch):
    """A hybrid file (20 groups + 60 sentences), batch 16: HT is active only on steps with >= 8 groups."""
    from cselab.configs import resolve_config
    from cselab.llm_data import write_training_file
    from cselab.train import train

    groups = [{"pattern": "sts", "sentence": f"a man plays a guitar number {i}", "5": f"a guy plays guitar {i}",
               "4": f"a man plays music {i}", "3": f"a woman sleeps {i}"} for i in range(20)]
    others = [f"the dog runs in the park number {i}" for i in range(60)]
    data = write_training_file(groups, others, tmp_path / "hybrid.jsonl")
    config = resolve_config("ngcse-tiny", train_file=str(data), batch_size=16, aigen_batch_size=8, epochs=2,
                            eval_steps=100, save_steps=100, log_steps=1)
    seen = []  # (generated groups, rows, HT loss) per step
    real_parts = ngcse_module.NGCSE.parts

    def spy(self, encoder, rows):
        out = real_parts(self, encoder, rows)
        seen.append((len(self.split_rows(rows)[0]), len(rows["sent0"]), float(out["ht"].detach())))
        return out

    monkeypatch.setattr(ngcse_module.NGCSE, "parts", spy)
    result = train(config, tmp_path / "run", progress=False)
    assert result.steps == 10 and len(seen) == 10  # ceil(80 / 16) = 5 steps per epoch, unchanged
    for epoch in (seen[:5], seen[5:]):
        assert sum(n for n, _, _ in epoch) == 20 and sum(b for _, b, _ in epoch) == 80  # every row once an epoch
        for k, (n_groups, _, ht) in enumerate(epoch):
            assert n_groups == 0 or n_groups >= 8 or k == 4, epoch  # the last step takes what is left
            if n_groups == 0:  # no groups -> no HT term
                assert ht == 0.0
    assert any(n == 0 for n, _, _ in seen) and any(n >= 8 for n, _, _ in seen)
