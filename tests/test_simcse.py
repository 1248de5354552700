"""SimCSE's training head (cselab.methods.simcse) against an independent copy of the official code.

The reference below, :func:`official_cl_forward`, is a line-by-line re-implementation of
``simcse/models.py:cl_forward`` as summarised in reference/methods.md §2.1, §3.1 and §4:
flatten ``(bs, num_sent, L)`` into one forward pass, ``MLPLayer`` (Linear + Tanh) over
[CLS], ``nn.CosineSimilarity(dim=-1)`` on broadcast ``(B,1,H) x (1,B,H)`` divided by the
temperature, the z1-z3 block concatenated for ``num_sent = 3`` with the hard-negative weight
added through an explicit ``weights`` matrix, and ``CrossEntropyLoss`` with ``arange`` labels.
Nothing in it calls ``cselab.losses`` or ``SimCSE``.

``SimCSE.loss`` stacks the views view-major (``[all x; all x+; all x-]``) where the official
collator stacks example-major (``[x_0, x+_0, x-_0, x_1, ...]``). With dropout off every
sequence's embedding is independent of its position in the batch, so both orders give the
same loss; the comparisons therefore run in eval mode, in float64.
"""
from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cselab import SentenceEncoder
from cselab.configs import resolve_config
from cselab.encoders import tiny_bert
from cselab.methods import SimCSE, build_method
from cselab.train import set_dropout

SENTENCES = [
    "A man is playing a guitar in the park .",
    "Two dogs run across a wide green field after a red ball .",
    "The cat sleeps .",
    "A woman is slicing an onion on a wooden board in a small kitchen .",
    "Children are playing football at the beach near the old pier .",
]
POSITIVES = [
    "A guy strums a guitar at the park .",
    "Dogs are running on grass .",
    "A cat is asleep on the sofa in the living room .",
    "Someone cuts an onion .",
    "Kids play soccer on the sand .",
]
NEGATIVES = [
    "Nobody is playing any instrument .",
    "The dogs are sleeping indoors all day long without moving at all .",
    "The cat is running .",
    "A man is eating a sandwich in a car .",
    "Adults are sitting in an office .",
]
TAU = 0.05


# ----------------------------------------------------------------------------- fixtures
def _encoder(dtype=torch.float64, seed: int = 0) -> SentenceEncoder:
    model, tok = tiny_bert(seed)
    model = model.to(dtype).eval()
    return SentenceEncoder(model, tok, "cls")


@pytest.fixture(scope="module")
def encoder64() -> SentenceEncoder:
    return _encoder(torch.float64)


@pytest.fixture(scope="module")
def ids(encoder64):
    tok = encoder64.tokenizer
    return {
        "sent0": tok(SENTENCES)["input_ids"],
        "sent1": tok(POSITIVES)["input_ids"],
        "hard_neg": tok(NEGATIVES)["input_ids"],
    }


def _head(supervised: bool, weight: float = 0.0, seed: int = 1, hidden: int = 128) -> SimCSE:
    torch.manual_seed(seed)
    return SimCSE(hidden, supervised=supervised, temperature=TAU, hard_negative_weight=weight).double()


# ----------------------------------------------------------------------------- reference
def _official_batch(rows_per_view: list[list[list[int]]], pad_id: int):
    """The official collator: (bs, num_sent, L) tensors, padded to the longest sequence of the batch."""
    num_sent, bs = len(rows_per_view), len(rows_per_view[0])
    longest = max(len(x) for view in rows_per_view for x in view)
    input_ids = torch.full((bs, num_sent, longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((bs, num_sent, longest), dtype=torch.long)
    for i in range(bs):
        for s in range(num_sent):
            x = rows_per_view[s][i]
            input_ids[i, s, : len(x)] = torch.tensor(x)
            attention_mask[i, s, : len(x)] = 1
    return input_ids, attention_mask


def official_pooler(pooler_type: str, attention_mask, outputs) -> torch.Tensor:
    """simcse/models.py:Pooler.forward."""
    last_hidden, hidden_states = outputs.last_hidden_state, outputs.hidden_states
    if pooler_type in ("cls", "cls_before_pooler"):
        return last_hidden[:, 0]
    if pooler_type == "avg":
        return (last_hidden * attention_mask.unsqueeze(-1)).sum(1) / attention_mask.sum(-1).unsqueeze(-1)
    if pooler_type == "avg_first_last":
        first_hidden, last_hidden = hidden_states[1], hidden_states[-1]
    else:  # avg_top2
        first_hidden, last_hidden = hidden_states[-2], hidden_states[-1]
    return (((first_hidden + last_hidden) / 2.0 * attention_mask.unsqueeze(-1)).sum(1)
            / attention_mask.sum(-1).unsqueeze(-1))


def official_cl_forward(bert, mlp_linear: nn.Linear | None, input_ids, attention_mask, temp: float,
                        hard_negative_weight: float = 0.0, pooler_type: str = "cls") -> torch.Tensor:
    """simcse/models.py:cl_forward (no MLM, single process)."""
    batch_size, num_sent, length = input_ids.shape
    input_ids = input_ids.view((-1, length))  # (bs * num_sent, L)
    attention_mask = attention_mask.view((-1, length))
    token_type_ids = torch.zeros_like(input_ids)
    outputs = bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True,
                   output_hidden_states=pooler_type in ("avg_top2", "avg_first_last"))
    pooler_output = official_pooler(pooler_type, attention_mask, outputs)
    pooler_output = pooler_output.view((batch_size, num_sent, pooler_output.size(-1)))
    if pooler_type == "cls":
        # MLPLayer: dense + activation (Tanh); re-implemented, only the weights are shared
        pooler_output = torch.tanh(pooler_output @ mlp_linear.weight.T + mlp_linear.bias)
    z1, z2 = pooler_output[:, 0], pooler_output[:, 1]
    if num_sent == 3:
        z3 = pooler_output[:, 2]
    cos = nn.CosineSimilarity(dim=-1)  # Similarity(temp)
    cos_sim = cos(z1.unsqueeze(1), z2.unsqueeze(0)) / temp
    if num_sent >= 3:
        z1_z3_cos = cos(z1.unsqueeze(1), z3.unsqueeze(0)) / temp
        cos_sim = torch.cat([cos_sim, z1_z3_cos], 1)
    labels = torch.arange(cos_sim.size(0)).long()
    loss_fct = nn.CrossEntropyLoss()
    if num_sent == 3:
        z3_weight = hard_negative_weight
        weights = torch.tensor(
            [[0.0] * (cos_sim.size(-1) - z1_z3_cos.size(-1)) + [0.0] * i + [z3_weight]
             + [0.0] * (z1_z3_cos.size(-1) - i - 1) for i in range(z1_z3_cos.size(-1))],
            dtype=cos_sim.dtype,
        )
        cos_sim = cos_sim + weights
    return loss_fct(cos_sim, labels)


def _official_loss(encoder, head: SimCSE, views, weight: float = 0.0) -> torch.Tensor:
    input_ids, mask = _official_batch(views, encoder.tokenizer.pad_token_id)
    mlp = head.mlp[0] if head.mlp is not None else None
    return official_cl_forward(encoder.model, mlp, input_ids, mask, TAU, weight, head.pooler_type)


class _Capture:
    """Records the output of a module (here: the MLP, i.e. every z of one loss call)."""

    def __init__(self, module: nn.Module):
        self.outputs: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(lambda m, i, o: self.outputs.append(o.detach().clone()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# ----------------------------------------------------------------------------- loss vs official
def test_unsup_loss_matches_official_cl_forward(encoder64, ids):
    head = _head(False)
    rows = {"sent0": ids["sent0"]}
    got = head.loss(encoder64, rows)
    want = _official_loss(encoder64, head, [ids["sent0"], ids["sent0"]])
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)
    # identical views (dropout off): the positive logit is 1/tau, the largest possible, so the
    # loss is the closed form  mean_i log(1 + sum_{j != i} exp((cos_ij - 1)/tau))  <  log B
    assert got.item() < math.log(len(SENTENCES))


OTHER_POOLERS = ["cls_before_pooler", "avg", "avg_top2", "avg_first_last"]


@pytest.mark.parametrize("pooler_type", OTHER_POOLERS)
@pytest.mark.parametrize("supervised", [False, True])
def test_other_pooler_types_match_official_cl_forward(encoder64, ids, pooler_type, supervised):
    """--pooler_type other than cls: the pooled vector itself, no MLP, in the same loss."""
    torch.manual_seed(1)
    head = SimCSE(128, supervised=supervised, temperature=TAU, hard_negative_weight=math.log(2.0),
                  pooler_type=pooler_type).double()
    assert head.mlp is None and list(head.parameters()) == []
    rows = ids if supervised else {"sent0": ids["sent0"]}
    views = [ids["sent0"], ids["sent1"], ids["hard_neg"]] if supervised else [ids["sent0"], ids["sent0"]]
    with torch.no_grad():
        got = head.loss(encoder64, rows)
        want = _official_loss(encoder64, head, views, math.log(2.0) if supervised else 0.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("pooler_type", ["cls_before_pooler", "avg"])
def test_other_pooler_types_evaluate_with_the_same_pooler(encoder64, pooler_type):
    for supervised in (False, True):
        ev = SimCSE(128, supervised=supervised, pooler_type=pooler_type).eval_encoder(encoder64)
        assert ev.pooling == pooler_type and ev.projector is None and ev.model is encoder64.model


def test_unknown_pooler_type_is_rejected():
    with pytest.raises(ValueError, match="pooler_type='mean'.*avg"):
        SimCSE(8, pooler_type="mean")


WEIGHTS = [0.0, math.log(2.0), -1.5, float("-inf")]  # log(alpha): alpha = 1, 2, e^-1.5, 0


@pytest.fixture(scope="module")
def sup_losses(encoder64, ids):
    """hard_negative_weight -> (SimCSE.loss, official cl_forward loss), same MLP weights for every weight."""
    out = {}
    for weight in WEIGHTS:
        head = _head(True, weight)
        with torch.no_grad():
            got = head.loss(encoder64, ids)
            want = _official_loss(encoder64, head, [ids["sent0"], ids["sent1"], ids["hard_neg"]], weight)
        out[weight] = (got, want)
    return out


@pytest.mark.parametrize("weight", WEIGHTS)
def test_sup_loss_matches_official_cl_forward(sup_losses, weight):
    got, want = sup_losses[weight]
    assert got.dtype == torch.float64 and torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)


def test_sup_weight_changes_the_loss_in_the_right_direction(sup_losses):
    # alpha = exp(w) multiplies the row's own hard negative in the denominator (Eq. 8): larger w, larger loss
    losses = [sup_losses[w][0].item() for w in sorted(WEIGHTS)]
    assert losses == sorted(losses) and len(set(losses)) == len(WEIGHTS)


def test_sup_gradients_match_official(encoder64, ids):
    head = _head(True, math.log(2.0))
    params = [head.mlp[0].weight, encoder64.model.embeddings.word_embeddings.weight]
    got = torch.autograd.grad(head.loss(encoder64, ids), params)
    want = torch.autograd.grad(
        _official_loss(encoder64, head, [ids["sent0"], ids["sent1"], ids["hard_neg"]], math.log(2.0)), params)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-8, atol=1e-12)
        assert w.abs().max() > 0


@pytest.mark.parametrize("supervised", [False, True])
def test_one_forward_pass_over_all_views(encoder64, ids, supervised):
    head = _head(supervised)
    rows = ids if supervised else {"sent0": ids["sent0"]}
    calls = []
    handle = encoder64.model.register_forward_hook(lambda m, a, kw, o: calls.append(kw["input_ids"].shape),
                                                   with_kwargs=True)
    try:
        head.loss(encoder64, rows)
    finally:
        handle.remove()
    num_views = 3 if supervised else 2
    assert len(calls) == 1 and calls[0][0] == num_views * len(SENTENCES)


def test_view_major_stacking_is_x_then_x_plus_then_x_minus(encoder64, ids):
    head = _head(True)
    with _Capture(head.mlp) as cap:
        head.loss(encoder64, ids)
    z = cap.outputs[0]
    b = len(SENTENCES)
    enc = SentenceEncoder(encoder64.model, encoder64.tokenizer, "cls", projector=head.mlp)
    for k, col in enumerate(("sent0", "sent1", "hard_neg")):
        with torch.no_grad():
            alone = enc(**enc.collate(ids[col]))
        assert torch.allclose(z[k * b:(k + 1) * b], alone, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- dropout is the noise
def test_dropout_on_makes_two_different_views():
    encoder = _encoder(torch.float64)
    tok_ids = encoder.tokenizer(SENTENCES)["input_ids"]
    head = _head(False)
    b = len(SENTENCES)
    with torch.no_grad():
        identical = _official_loss(encoder, head, [tok_ids, tok_ids]).item()  # eval mode: z1 == z2
    encoder.train()
    torch.manual_seed(0)
    with _Capture(head.mlp) as cap:
        loss = head.loss(encoder, {"sent0": tok_ids})
    z = cap.outputs[0]
    z1, z2 = z[:b], z[b:]
    assert (z1 - z2).abs().max() > 1e-3  # the two copies got different dropout masks
    # the loss is the one of those two views (rows z1, columns z2) ...
    logits = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / TAU
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.arange(b)).item(), rel=1e-10)
    # ... and it exceeds the closed-form value of identical views, with the same dropout draw (rows
    # z1 against themselves: positive logit 1/tau) and without dropout (eval mode)
    self_logits = F.cosine_similarity(z1.unsqueeze(1), z1.unsqueeze(0), dim=-1) / TAU
    closed_form = torch.log1p((self_logits - 1 / TAU).exp().sum(1) - 1).mean().item()
    assert closed_form == pytest.approx(F.cross_entropy(self_logits, torch.arange(b)).item(), rel=1e-9)
    assert loss.item() > closed_form + 1e-3
    assert loss.item() > identical + 1e-3


def test_dropout_zero_gives_identical_views_in_train_mode():
    # "Identical" up to float rounding: the CPU GEMM kernels block rows of one batch differently, so
    # two copies of a sequence can differ in the last bit even in eval mode (~1e-16 in float64 here,
    # ~1e-7 in float32). Dropout p = 0.1 moves them by ~1e-1 (previous test).
    encoder = _encoder(torch.float64)
    tok_ids = encoder.tokenizer(SENTENCES)["input_ids"]
    set_dropout(encoder.model, 0.0)
    assert all(m.p == 0.0 for m in encoder.model.modules() if isinstance(m, nn.Dropout))
    encoder.train()
    assert encoder.model.training
    head = _head(False)
    b = len(SENTENCES)
    torch.manual_seed(0)
    with _Capture(head.mlp) as cap:
        loss = head.loss(encoder, {"sent0": tok_ids})
    z = cap.outputs[0]
    assert torch.allclose(z[:b], z[b:], rtol=0, atol=1e-12)
    encoder.eval()
    with torch.no_grad():
        assert loss.item() == pytest.approx(head.loss(encoder, {"sent0": tok_ids}).item(), rel=1e-12)


class _Sdpa4xAttention(nn.Module):
    """Self-attention as transformers 4.41-4.4x's ``BertSdpaSelfAttention``: the attention dropout is a
    float attribute ``dropout_prob`` (copied from ``config.attention_probs_dropout_prob``), not an
    ``nn.Dropout`` module, and is passed to ``scaled_dot_product_attention(dropout_p=...)``."""

    def __init__(self, dim: int = 8, p: float = 0.1):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.dropout = nn.Dropout(p)  # the module exists but the SDPA path does not use it
        self.dropout_prob = p

    def forward(self, x):
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout_prob if self.training else 0.0)


def test_set_dropout_also_reaches_sdpa_attention_dropout_prob():
    torch.manual_seed(0)
    attn = _Sdpa4xAttention().train()
    set_dropout(attn, 0.0)
    x = torch.randn(4, 6, 8)
    assert torch.equal(attn(x), attn(x))


# ----------------------------------------------------------------------------- the MLP head
def test_mlp_is_random_normal_002_with_zero_bias():
    torch.manual_seed(123)
    head = SimCSE(768)
    linear, act = head.mlp[0], head.mlp[1]
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (768, 768)
    assert isinstance(act, nn.Tanh) and len(head.mlp) == 2
    w = linear.weight.detach().double()
    assert w.std().item() == pytest.approx(0.02, rel=0.01)  # 589,824 draws: std of the estimate ~ 1e-3 rel
    assert abs(w.mean().item()) < 2e-4
    # normal, not uniform (kaiming-uniform of nn.Linear would have std 1/sqrt(3*768) = 0.0208 and bounded support)
    assert w.abs().max().item() > 4 * 0.02
    assert torch.count_nonzero(linear.bias) == 0
    torch.manual_seed(124)
    assert not torch.equal(SimCSE(768).mlp[0].weight, linear.weight)  # randomly initialised, not a constant
    assert SimCSE(64, initializer_range=0.1).mlp[0].weight.std().item() == pytest.approx(0.1, rel=0.05)


def test_mlp_is_not_the_pretrained_pooler():
    encoder = _encoder(torch.float32)
    head = build_method(resolve_config("unsup-simcse-tiny", pooler_type="cls"), encoder)
    assert not torch.equal(head.mlp[0].weight, encoder.model.pooler.dense.weight)
    assert all(p is not q for p in head.parameters() for q in encoder.model.parameters())


# ----------------------------------------------------------------------------- evaluation encoders
def test_unsup_eval_encoder_is_raw_cls_without_mlp(encoder64):
    head = _head(False)
    ev = head.eval_encoder(encoder64)
    assert ev.pooling == "cls_before_pooler" and ev.projector is None
    assert ev.model is encoder64.model and ev.tokenizer is encoder64.tokenizer  # shares the weights
    assert all(p is not q for p in ev.parameters() for q in head.mlp.parameters())
    got = ev.encode(SENTENCES)
    batch = encoder64.collate(encoder64.tokenizer(SENTENCES)["input_ids"])
    with torch.no_grad():
        want = encoder64.model(**batch).last_hidden_state[:, 0].float()
    assert got.shape == (len(SENTENCES), 128)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sup_eval_encoder_is_mlp_over_cls(encoder64):
    head = _head(True)
    ev = head.eval_encoder(encoder64)
    assert ev.pooling == "cls" and ev.projector is head.mlp
    assert ev.model is encoder64.model
    got = ev.encode(SENTENCES)
    batch = encoder64.collate(encoder64.tokenizer(SENTENCES)["input_ids"])
    with torch.no_grad():
        cls = encoder64.model(**batch).last_hidden_state[:, 0]
        want = torch.tanh(cls @ head.mlp[0].weight.T + head.mlp[0].bias).float()
        pooler = encoder64.model(**batch).pooler_output.float()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, pooler, atol=1e-3)  # the trained MLP, not BERT's own pooler


# ----------------------------------------------------------------------------- columns, build_method
def test_columns_per_variant():
    assert SimCSE(8, supervised=False).columns == ("sent0",)
    assert SimCSE(8, supervised=True).columns == ("sent0", "sent1", "hard_neg")


def test_build_method_from_configs():
    encoder = _encoder(torch.float32)
    unsup = build_method(resolve_config("unsup-simcse-tiny", temperature=0.1, pooler_type="cls"), encoder)
    assert isinstance(unsup, SimCSE) and not unsup.supervised
    assert unsup.temperature == 0.1 and unsup.columns == ("sent0",)
    assert unsup.mlp[0].in_features == unsup.mlp[0].out_features == encoder.model.config.hidden_size
    sup = build_method(resolve_config("sup-simcse-tiny", hard_negative_weight=math.log(2.0), pooler_type="cls"),
                      encoder)
    assert isinstance(sup, SimCSE) and sup.supervised
    assert sup.temperature == 0.05 and sup.hard_negative_weight == math.log(2.0)
    assert sup.columns == ("sent0", "sent1", "hard_neg")
    # the MLP's std follows the encoder config's initializer_range
    encoder.model.config.initializer_range = 0.2
    wide = build_method(resolve_config("sup-simcse-tiny", pooler_type="cls"), encoder)
    assert wide.mlp[0].weight.std().item() == pytest.approx(0.2, rel=0.1)


def test_build_method_rejects_unknown_method():
    encoder = _encoder(torch.float32)
    config = types.SimpleNamespace(method="x-simcse", temperature=0.05, hard_negative_weight=0.0)
    with pytest.raises(ValueError, match="x-simcse"):
        build_method(config, encoder)
