"""DeCLUTR (cselab.methods.declutr) against independent transcriptions of reference §7.2.

Expected values are computed here from the formulas: pytorch-metric-learning's NTXentLoss
written as loops over ordered positive pairs, mean pooling and the MLM head written out by
hand, separate forward passes instead of the method's stacked one.
"""
from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cselab import SentenceEncoder
from cselab.augment import mask_tokens
from cselab.losses import info_nce
from cselab.methods.declutr import DeCLUTR, MLMHead, load_mlm_head, special_tokens_around


# ------------------------------------------------------------------ NT-Xent, pytorch-metric-learning style
def naive_nt_xent(anchors: np.ndarray, positives: np.ndarray, tau: float) -> float:
    """NTXentLoss(temperature=tau) on embeddings cat(a, p) with labels cat(r, r), r = 0..N-1:
    one term per ordered positive pair (i, j), negatives = every vector with another label."""
    emb = [np.asarray(v, dtype=np.float64) for v in list(anchors) + list(positives)]
    labels = list(range(len(anchors))) * 2
    cos = lambda u, v: float(u @ v / (math.sqrt(u @ u) * math.sqrt(v @ v)))  # noqa: E731
    terms = []
    for i, u in enumerate(emb):
        for j, v in enumerate(emb):
            if i == j or labels[i] != labels[j]:
                continue
            pos = math.exp(cos(u, v) / tau)
            neg = sum(math.exp(cos(u, w) / tau) for k, w in enumerate(emb) if labels[k] != labels[i])
            terms.append(-math.log(pos / (pos + neg)))
    assert len(terms) == 2 * len(anchors)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("n,dim,tau", [(2, 3, 0.05), (5, 7, 0.05), (8, 16, 0.1), (3, 4, 1.0)])
def test_symmetric_info_nce_is_pml_nt_xent(n, dim, tau):
    gen = torch.Generator().manual_seed(n * 100 + dim)
    a, p = torch.randn(n, dim, generator=gen), torch.randn(n, dim, generator=gen)
    got = info_nce(a, p, temperature=tau, symmetric=True).item()
    # float32 against a float64 reference: a few float32 ulps (1.2e-7 relative) of a loss up to ~8
    assert got == pytest.approx(naive_nt_xent(a.numpy(), p.numpy(), tau), rel=1e-5, abs=1e-6)


def test_nt_xent_of_two_pairs_by_hand():
    # a0 = p0 = e1, a1 = p1 = e2 (orthogonal): each row has cos 1 to its partner, 0 to the two others
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))  # 2N - 2 = 2 negatives with logit 0
    # float32: one ulp of 0.24 is 1.5e-8, and 4e-8 was seen
    assert info_nce(a, a.clone(), temperature=tau, symmetric=True).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ the method
@pytest.fixture()
def encoder():
    enc = SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg", seed=3)
    enc.model.double().eval()  # float64 and no dropout: the stacked and separate forwards agree tightly
    return enc


def make_method(encoder, **kwargs) -> DeCLUTR:
    values = dict(min_span_length=4, max_span_length=12, max_length=16, seed=7)
    return DeCLUTR(encoder, **{**values, **kwargs}).double()


def documents(encoder, n: int = 3, length: int = 60) -> list[list[int]]:
    gen = np.random.default_rng(0)
    vocab = len(encoder.tokenizer)
    special = set(encoder.tokenizer.all_special_ids)
    ids = [i for i in range(vocab) if i not in special]
    return [[int(x) for x in gen.choice(ids, size=length + 5 * d)] for d in range(n)]


def mean_pool_by_hand(model, inputs: list[list[int]]) -> torch.Tensor:
    """One sequence at a time, no padding: the mean of every token's last hidden state."""
    out = []
    for ids in inputs:
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                       token_type_ids=torch.zeros(1, len(ids), dtype=torch.long)).last_hidden_state[0]
        out.append(hidden.sum(0) / len(ids))
    return torch.stack(out)


def test_loss_is_nt_xent_plus_mlm_computed_by_hand(encoder):
    method = make_method(encoder)
    tok = encoder.tokenizer
    docs = documents(encoder)
    anchors, positives = method.spans(docs)
    assert len(anchors) == 3 * 2 and len(positives) == 3 * 2 * 2

    torch.manual_seed(11)
    total = method.loss_on_spans(encoder, anchors, positives)
    stats = method.last_stats

    # by hand: [CLS] span [SEP], the same masking draws (the masks are the only random draw, dropout off)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    anchor_inputs = [[cls] + a + [sep] for a in anchors]
    positive_inputs = [[cls] + p + [sep] for p in positives]
    longest = max(len(x) for x in anchor_inputs + positive_inputs)
    padded = torch.tensor([x + [tok.pad_token_id] * (longest - len(x)) for x in anchor_inputs])
    attention = torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in anchor_inputs])
    torch.manual_seed(11)
    masked, labels = mask_tokens(padded, tok, 0.15, attention)
    masked_inputs = [masked[i, : len(x)].tolist() for i, x in enumerate(anchor_inputs)]

    model = encoder.model
    with torch.no_grad():
        e = mean_pool_by_hand(model, masked_inputs)  # (N, H): the masked anchors
        p = mean_pool_by_hand(model, positive_inputs).view(len(anchors), 2, -1).mean(1)  # (N, H)
        contrastive = naive_nt_xent(e.numpy(), p.numpy(), 0.05)
        # MLM: the head on each masked position, cross-entropy averaged over the masked tokens
        head, emb = method.mlm_head, model.get_input_embeddings().weight
        nll = []
        for i, ids in enumerate(masked_inputs):
            hidden = model(input_ids=torch.tensor([ids]), token_type_ids=torch.zeros(1, len(ids), dtype=torch.long)
                           ).last_hidden_state[0]
            for t in range(len(ids)):
                if labels[i, t] != -100:
                    x = F.layer_norm(F.gelu(hidden[t] @ head.dense.weight.T + head.dense.bias), (hidden.shape[-1],),
                                     head.layer_norm.weight, head.layer_norm.bias, head.layer_norm.eps)
                    logits = x @ emb.T + head.bias
                    nll.append(-(logits[labels[i, t]] - torch.logsumexp(logits, 0)).item())
    assert len(nll) == int(stats["masked_tokens"]) > 0
    mlm = sum(nll) / len(nll)
    assert stats["contrastive"].item() == pytest.approx(contrastive, abs=1e-6)
    # the method's cross-entropy runs on float32 logits (bf16-safe), the reference in float64: a relative
    # tolerance of a few float32 ulps (one ulp of a loss near 9 is ~1e-6, which a CI machine exceeded)
    assert stats["mlm"].item() == pytest.approx(mlm, rel=1e-5, abs=1e-6)
    assert total.item() == pytest.approx(contrastive + mlm, rel=1e-5, abs=1e-6)  # weight 1 : 1


def test_mlm_weight_scales_only_the_mlm_part(encoder):
    docs = documents(encoder)
    parts = {}
    head = make_method(encoder).mlm_head  # one head for all three: only the weight differs
    for weight in (1.0, 0.25, 0.0):
        method = make_method(encoder, mlm_weight=weight, mlm_head=head)
        torch.manual_seed(5)
        total = method.loss(encoder, {"text": docs})
        parts[weight] = (total.item(), method.last_stats["contrastive"].item(), method.last_stats["mlm"].item())
    con, mlm = parts[1.0][1], parts[1.0][2]
    assert parts[0.25][0] == pytest.approx(con + 0.25 * mlm, abs=1e-9)
    assert parts[0.0][0] == pytest.approx(parts[0.0][1], abs=1e-9) and parts[0.0][2] == 0.0


def test_scale_fix_multiplies_only_the_contrastive_loss_by_the_world_size(encoder, monkeypatch):
    """Official DeCLUTR.forward: under DDP with scale_fix, contrastive * world_size, then + MLM."""
    import cselab.methods.declutr as declutr_module

    docs = documents(encoder)
    head = make_method(encoder).mlm_head
    torch.manual_seed(5)
    plain = make_method(encoder, mlm_head=head)
    total = plain.loss(encoder, {"text": docs})
    con, mlm = plain.last_stats["contrastive"].item(), plain.last_stats["mlm"].item()
    monkeypatch.setattr(declutr_module, "world_size", lambda: 4)  # as if 4 processes (gathering is a no-op here)
    torch.manual_seed(5)
    fixed = make_method(encoder, mlm_head=head, scale_fix=True).loss(encoder, {"text": docs})
    assert total.item() == pytest.approx(con + mlm, abs=1e-9)
    assert fixed.item() == pytest.approx(4 * con + mlm, abs=1e-9)
    # the trainer's scale_fix hook leaves DeCLUTR's loss alone, so the whole loss is not scaled again
    assert make_method(encoder, mlm_head=head, scale_fix=True).scale_for_world(fixed, 4) is fixed


def test_contrastive_only_leaves_the_anchors_unmasked(encoder):
    """mlm_weight=0 is contrastive_only.jsonnet: no masking, so the loss is NT-Xent over the plain spans."""
    docs = documents(encoder)
    method = make_method(encoder, mlm_weight=0.0)
    torch.manual_seed(5)
    total = method.loss(encoder, {"text": docs})
    assert method.last_stats["masked_tokens"].item() == 0
    method.draws.zero_()  # the same spans again, encoded by hand without any masking
    anchors, positives = method.spans(docs, None)
    batch = encoder.collate(method._inputs(encoder.tokenizer, anchors) + method._inputs(encoder.tokenizer, positives))
    torch.manual_seed(5)
    hidden = encoder.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    n = len(anchors)
    a, p = pooled[:n], pooled[n:].view(n, method.num_positives, -1).mean(1)
    z = F.normalize(torch.cat([a, p]), dim=-1)
    sim = z @ z.T / method.temperature  # (2N, 2N)
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    assert total.item() == pytest.approx(F.cross_entropy(sim, target).item(), rel=1e-5)


def test_gradients_reach_encoder_and_head(encoder):
    method = make_method(encoder)
    method.loss(encoder, {"text": documents(encoder)}).backward()
    assert method.mlm_head.dense.weight.grad.abs().sum() > 0
    assert encoder.model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_a_batch_without_masked_tokens_gives_a_finite_loss(encoder):
    method = make_method(encoder, mlm_probability=1e-9)
    loss = method.loss(encoder, {"text": documents(encoder)})
    assert torch.isfinite(loss) and method.last_stats["mlm"].item() == 0.0


def test_spans_are_slices_and_inputs_are_truncated(encoder):
    method = make_method(encoder, min_span_length=20, max_span_length=30, max_length=12)
    docs = documents(encoder, n=2, length=130)
    anchors, positives = method.spans(docs)
    text = [" ".join(map(str, d)) for d in docs]
    for span in anchors + positives:
        assert 20 <= len(span) <= 30
        assert any(" ".join(map(str, span)) in t for t in text)  # a contiguous slice of one document
    prefix, suffix = special_tokens_around(encoder.tokenizer)
    inputs = method._inputs(encoder.tokenizer, anchors)
    assert all(len(x) == 12 and x[:1] == prefix and x[-1:] == suffix for x in inputs)


def test_span_draws_are_deterministic_and_resume_with_the_state(encoder):
    docs = documents(encoder)
    first, second = make_method(encoder), make_method(encoder)
    draws = [first.spans(docs) for _ in range(3)]
    assert draws[0] != draws[1]  # fresh spans every time a document is seen
    assert [second.spans(docs) for _ in range(3)] == draws  # same seed, same spans
    resumed = make_method(encoder)
    resumed.load_state_dict(first.state_dict())  # the draw counter travels in checkpoints
    assert int(resumed.draws) == 3
    assert resumed.spans(docs) == first.spans(docs)
    assert make_method(encoder, seed=8).spans(docs) != draws[0]


def test_prepare_dataset_names_the_short_document(encoder):
    method = make_method(encoder)  # needs 2 * 12 * 2 = 48 tokens
    ds = datasets.Dataset.from_dict({"text": [[5] * 60, [5] * 47, [5] * 10], "title": ["Long", "Short one", ""]})
    with pytest.raises(ValueError, match=r"2 of 3 .* 48 tokens.*document 2 \('Short one'\) with 47.*scale_spans"):
        method.prepare_dataset(ds, encoder.tokenizer)
    assert make_method(encoder, scale_spans=True).prepare_dataset(ds, encoder.tokenizer) is ds
    tiny = datasets.Dataset.from_dict({"text": [[5] * 60, [5] * 3]})
    with pytest.raises(ValueError, match=r"shorter than the 4 tokens.*document 2 with 3"):
        make_method(encoder, scale_spans=True).prepare_dataset(tiny, encoder.tokenizer)


def test_short_document_in_a_batch_is_named(encoder):
    with pytest.raises(ValueError, match="'Tatwine' has 30 tokens.*48"):
        make_method(encoder).spans([[5] * 60, [5] * 30], ["A", "Tatwine"])


def test_eval_encoder_is_mean_pooling_with_special_tokens(encoder):
    method = make_method(encoder)
    sentences = ["a man is playing a guitar .", "a dog runs"]
    got = method.eval_encoder(encoder).encode(sentences, show_progress=False)
    inputs = [encoder.tokenizer(s)["input_ids"] for s in sentences]  # [CLS] ... [SEP]
    with torch.no_grad():
        want = mean_pool_by_hand(encoder.model, inputs)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"),
    (dict(mlm_probability=0.0), "mlm_probability"),
    (dict(mlm_weight=-1.0), "mlm_weight"),
    (dict(max_length=2), "max_length"),
])
def test_bad_arguments(encoder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeCLUTR(encoder, **kwargs)


def test_positives_must_match_anchors(encoder):
    with pytest.raises(ValueError, match="expected 2 \\* 2"):
        make_method(encoder).loss_on_spans(encoder, [[5, 6], [7, 8]], [[5], [6], [7]])


# ------------------------------------------------------------------ the MLM head from a checkpoint
def _tiny_config(kind: str, vocab: int):
    from transformers import BertConfig, RobertaConfig

    cls = BertConfig if kind == "bert" else RobertaConfig
    return cls(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               max_position_embeddings=40, pad_token_id=0)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_pretrained_head_gives_the_masked_lm_logits(tmp_path, encoder, kind):
    from transformers import AutoModel, AutoModelForMaskedLM

    torch.manual_seed(0)
    mlm = AutoModelForMaskedLM.from_config(_tiny_config(kind, len(encoder.tokenizer)))
    with torch.no_grad():  # a head that is not at its initial values
        for p in mlm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mlm.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    enc = SentenceEncoder(base, encoder.tokenizer, "avg")
    head = load_mlm_head(str(tmp_path), enc)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    mlm.eval()
    base.eval()
    with torch.no_grad():
        want = mlm(input_ids=ids).logits[0]  # (seq, vocab)
        got = head(base(input_ids=ids).last_hidden_state[0], base.get_input_embeddings().weight)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_checkpoint_without_head_warns_and_starts_random(tmp_path, encoder):
    from transformers import BertModel

    BertModel(_tiny_config("bert", len(encoder.tokenizer))).save_pretrained(tmp_path)
    enc = SentenceEncoder(BertModel.from_pretrained(tmp_path), encoder.tokenizer, "avg")
    with pytest.warns(UserWarning, match="no pretrained MLM head"):
        head = load_mlm_head(str(tmp_path), enc)
    assert isinstance(head, MLMHead) and head.bias.shape == (len(encoder.tokenizer),)


def test_tiny_preset_gets_a_random_head(encoder):
    head = load_mlm_head("cselab/tiny", encoder)
    assert head.dense.weight.shape == (128, 128) and torch.all(head.bias == 0)
