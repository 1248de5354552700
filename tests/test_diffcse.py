"""DiffCSE: the loss against an independent re-implementation of the official cl_forward, the
conditioning of the discriminator, the generator's vocabulary check, presets and training.

The reference below rebuilds everything from the weights with plain torch: a hand-written BERT
forward (embeddings, attention, feed-forward, LayerNorm) whose position-0 input embedding is
replaced by h, the BatchNorm projector with batch statistics, the generator's argmax edits, and
the RTD cross-entropy over all 2B x L positions (reference §6.1).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cselab import SentenceEncoder
from cselab.configs import PRESETS, resolve_config
from cselab.encoders import tiny_bert
from cselab.methods import DiffCSE, build_method, load_generator
from cselab.methods import diffcse as diffcse_module
from cselab.methods.diffcse import ProjectionMLP, check_same_vocabulary
from cselab.train import set_dropout

TAU, LAMBDA = 0.05, 0.3  # a large lambda so that the RTD term is visible in the comparison
SENTENCES = ["A man is playing a guitar in the park .", "A woman slices an onion .", "Two dogs run .",
             "The cook eats some fruit at the beach .", "A child reads a book at the kitchen counter ."]


@pytest.fixture(scope="module")
def generator():
    model, tok = tiny_bert(0)
    gen = load_generator("cselab/tiny-mlm", SentenceEncoder(model, tok, "cls"))
    set_dropout(gen, 0.0)  # the head puts it in train mode (official); no dropout keeps the comparisons exact
    return gen


def _encoder() -> SentenceEncoder:
    model, tok = tiny_bert(0)
    set_dropout(model, 0.0)  # deterministic forward; BatchNorm still uses batch statistics in train mode
    return SentenceEncoder(model.to(torch.float64).train(), tok, "cls")


def _head(encoder, generator, include_padding=True, batchnorm=True, pooler_type="cls") -> DiffCSE:
    torch.manual_seed(7)
    head = DiffCSE(encoder, generator, temperature=TAU, lambda_weight=LAMBDA, masking_ratio=0.3,
                   batchnorm=batchnorm, pooler_type=pooler_type, rtd_include_padding=include_padding)
    with torch.no_grad():  # the discriminator must not simply equal the encoder: move its weights
        for p in head.discriminator.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return head.to(torch.float64).train()


# ----------------------------------------------------------------------------- the independent reference
def manual_bert(model, ids: torch.Tensor, mask: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """BERT's forward from its weights (dropout off). ids/mask (n, L); first (n, H) replaces position 0."""
    cfg = model.config
    emb = model.embeddings
    n, length = ids.shape
    x = emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[:length] + emb.token_type_embeddings.weight[0]
    x = F.layer_norm(x, (cfg.hidden_size,), emb.LayerNorm.weight, emb.LayerNorm.bias, cfg.layer_norm_eps)
    if first is not None:
        x = torch.cat([first.unsqueeze(1), x[:, 1:]], dim=1)  # DiffCSE's conditioning
    heads, d = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    blocked = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # (n, 1, 1, L)
    for layer in model.encoder.layer:
        att = layer.attention.self

        def split(t):  # (n, L, H) -> (n, heads, L, d)
            return t.view(n, length, heads, d).transpose(1, 2)

        q, k, v = (split(x @ lin.weight.T + lin.bias) for lin in (att.query, att.key, att.value))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + blocked, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(n, length, cfg.hidden_size)
        out = layer.attention.output
        x = F.layer_norm(ctx @ out.dense.weight.T + out.dense.bias + x, (cfg.hidden_size,), out.LayerNorm.weight,
                         out.LayerNorm.bias, cfg.layer_norm_eps)
        inner = F.gelu(x @ layer.intermediate.dense.weight.T + layer.intermediate.dense.bias)
        out = layer.output
        x = F.layer_norm(inner @ out.dense.weight.T + out.dense.bias + x, (cfg.hidden_size,), out.LayerNorm.weight,
                         out.LayerNorm.bias, cfg.layer_norm_eps)
    return x


def batch_norm(x, bn) -> torch.Tensor:
    """BatchNorm1d in training mode: batch mean and biased variance."""
    y = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    return y * bn.weight + bn.bias if bn.affine else y


def official_diffcse_loss(encoder, head, ids, mask, masked_ids, include_padding=True) -> torch.Tensor:
    """diffcse/models.py:cl_forward (cls pooler, --batchnorm, single process) from the weights."""
    b = ids.shape[0] // 2
    cls = manual_bert(encoder.model, ids, mask)[:, 0]  # (2B, H)
    lin1, bn1, _, lin2, bn2 = head.mlp.net
    h = batch_norm(torch.relu(batch_norm(cls @ lin1.weight.T, bn1)) @ lin2.weight.T, bn2)  # ProjectionMLP
    z1, z2 = h[:b], h[b:]
    cos = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / TAU
    contrastive = F.cross_entropy(cos, torch.arange(b))
    with torch.no_grad():
        g_pred = head.generator(input_ids=masked_ids, attention_mask=mask).logits.argmax(-1)
    g_pred[:, 0] = ids[:, 0]  # cls_token
    replaced = (g_pred != ids).long() * mask
    e_inputs = g_pred * mask
    hidden = manual_bert(head.discriminator, e_inputs, mask, first=h)
    logits = hidden @ head.electra_head.weight.T + head.electra_head.bias  # (2B, L, 2)
    per_token = -torch.log_softmax(logits, dim=-1).gather(-1, replaced.unsqueeze(-1)).squeeze(-1)  # (2B, L)
    if include_padding:
        rtd = per_token.mean()  # official: CrossEntropyLoss over view(-1, 2), padding included
    else:
        rtd = (per_token * mask).sum() / mask.sum()
    return contrastive + LAMBDA * rtd


def _inputs(encoder, monkeypatch):
    ids_list = encoder.tokenize(SENTENCES)["input_ids"]
    batch = encoder.collate(ids_list + ids_list)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    from cselab.augment import mask_tokens

    masked, _ = mask_tokens(ids, encoder.tokenizer, 0.3, attention_mask=mask, generator=torch.Generator().manual_seed(1))
    calls = []

    def fixed(input_ids, tokenizer, probability, attention_mask=None, generator=None):
        calls.append(probability)
        assert torch.equal(input_ids, ids) and torch.equal(attention_mask, mask)
        return masked.clone(), None

    monkeypatch.setattr(diffcse_module, "mask_tokens", fixed)
    return {"sent0": ids_list}, ids, mask, masked, calls


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("include_padding", [True, False])
def test_loss_matches_the_official_cl_forward(generator, monkeypatch, include_padding):
    encoder = _encoder()
    head = _head(encoder, generator, include_padding=include_padding)
    rows, ids, mask, masked, calls = _inputs(encoder, monkeypatch)
    assert (mask == 0).any()  # the batch has padding, so the two averages differ
    got = head.loss(encoder, rows)
    want = official_diffcse_loss(encoder, head, ids, mask, masked, include_padding)
    assert got.dtype == torch.float64 and calls == [0.3]
    assert got.item() == pytest.approx(want.item(), rel=1e-9, abs=1e-10)
    assert 0 < head.last_stats["replaced_fraction"] < 1


def test_rtd_term_and_its_gradient_reach_the_encoder_through_h(generator, monkeypatch):
    encoder = _encoder()
    head = _head(encoder, generator)
    rows, ids, mask, masked, _ = _inputs(encoder, monkeypatch)
    with_rtd = head.loss(encoder, rows)
    grad_with = torch.autograd.grad(with_rtd, encoder.model.embeddings.word_embeddings.weight)[0]
    head.lambda_weight = 0.0
    without = head.loss(encoder, rows)
    grad_without = torch.autograd.grad(without, encoder.model.embeddings.word_embeddings.weight)[0]
    assert with_rtd.item() > without.item()
    assert not torch.allclose(grad_with, grad_without)  # the RTD loss changes the encoder's gradient
    # the discriminator and the head are trained; the generator is frozen and not a submodule
    names = {n for n, _ in head.named_parameters()}
    assert any(n.startswith("discriminator.") for n in names) and "electra_head.weight" in names
    assert not any(n.startswith("generator") or "_frozen" in n for n in names)
    assert all(not p.requires_grad for p in head.generator.parameters())


def test_conditioning_replaces_exactly_the_position_0_input_embedding(generator):
    encoder = _encoder()
    head = _head(encoder, generator).eval()
    ids_list = encoder.tokenize(SENTENCES[:3])["input_ids"]
    batch = encoder.collate(ids_list)
    h = torch.randn(3, 128, dtype=torch.float64)
    with torch.no_grad():
        got = head.discriminate(batch["input_ids"], batch["attention_mask"], h)
        hidden = manual_bert(head.discriminator, batch["input_ids"], batch["attention_mask"], first=h)
        want = hidden @ head.electra_head.weight.T + head.electra_head.bias
        unconditioned = head.discriminator(input_ids=batch["input_ids"],
                                           attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(unconditioned, hidden)  # h matters
    # the hook is removed afterwards: a plain call is the plain model again
    with torch.no_grad():
        again = head.discriminator(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(again, unconditioned, rtol=0, atol=0)


def test_projection_mlp_shape_and_batchnorm_without_affine():
    mlp = ProjectionMLP(16)
    lin1, bn1, relu, lin2, bn2 = mlp.net
    assert (lin1.in_features, lin1.out_features, lin1.bias) == (16, 32, None)
    assert (lin2.in_features, lin2.out_features, lin2.bias) == (32, 16, None)
    assert bn1.affine and not bn2.affine and isinstance(relu, torch.nn.ReLU)
    out = mlp.train()(torch.randn(10, 16))
    torch.testing.assert_close(out.mean(0), torch.zeros(16), atol=1e-5, rtol=0)  # BN without affine: centred


def test_discriminator_starts_from_the_encoders_weights_and_evaluation_drops_the_projector(generator):
    model, tok = tiny_bert(0)
    encoder = SentenceEncoder(model, tok, "cls")
    head = DiffCSE(encoder, generator)
    for (name, p), (_, q) in zip(head.discriminator.named_parameters(), encoder.model.named_parameters()):
        assert torch.equal(p, q) and p is not q, name
    assert head.discriminator.pooler is None  # add_pooling_layer=False
    ev = head.eval_encoder(encoder)
    assert ev.pooling == "cls_before_pooler" and ev.projector is None and ev.model is encoder.model
    assert DiffCSE(encoder, generator, pooler_type="avg").eval_encoder(encoder).pooling == "avg"


def test_a_generator_with_another_vocabulary_is_refused(generator):
    from transformers import BertTokenizerFast

    model, tok = tiny_bert(0)
    encoder = SentenceEncoder(model, tok, "cls")
    other = BertTokenizerFast(vocab={"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5})
    with pytest.raises(ValueError, match="different vocabulary.*distilbert-base-uncased"):
        check_same_vocabulary(tok, other, "some/mlm")
    check_same_vocabulary(tok, tok)  # the same vocabulary passes


def test_unknown_local_generator_is_a_clear_error(tmp_path):
    model, tok = tiny_bert(0)
    with pytest.raises(FileNotFoundError, match="generator="):
        load_generator(str(tmp_path), SentenceEncoder(model, tok, "cls"))


def test_presets_have_the_official_values():
    c = PRESETS["diffcse-bert-base"]
    assert (c.method, c.model, c.generator, c.batch_size, c.learning_rate, c.epochs) == \
        ("diffcse", "bert-base-uncased", "distilbert-base-uncased", 64, 7e-6, 2)
    assert (c.lambda_weight, c.masking_ratio, c.batchnorm, c.temperature, c.max_length) == (0.005, 0.30, True, 0.05, 32)
    assert (c.pooler_type, c.eval_pooling, c.rtd_include_padding) == ("cls", "cls_before_pooler", True)
    assert PRESETS["diffcse-roberta-base"].generator == "distilroberta-base"
    assert PRESETS["diffcse-tiny"].generator == "cselab/tiny-mlm"


@pytest.mark.parametrize("key,value", [("masking_ratio", "0"), ("masking_ratio", "1.2"), ("lambda_weight", "-1"),
                                       ("lambda_weight", "inf")])
def test_bad_values_fail_before_any_work(key, value):
    with pytest.raises(ValueError, match=key):
        resolve_config("diffcse-tiny", {key: value})


def test_build_method_passes_the_config():
    model, tok = tiny_bert(0)
    head = build_method(resolve_config("diffcse-tiny", lambda_weight=0.1, masking_ratio=0.2, batchnorm=False),
                        SentenceEncoder(model, tok, "cls"))
    assert isinstance(head, DiffCSE)
    assert (head.lambda_weight, head.masking_ratio, head.mlp) == (0.1, 0.2, None)  # ci: avg pooler, no projector


# ----------------------------------------------------------------------------- the causal generator (ci encoder)
def _tiny_llama_lm():
    """A random 2-layer causal LM over the tiny vocabulary (same ids as tiny_bert's tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_bert(0)[1]
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return LlamaForCausalLM(config).eval(), tok


def test_causal_generator_replaces_selected_tokens_by_the_greedy_next_token_of_the_prefix():
    lm, tok = _tiny_llama_lm()
    batch = tok(SENTENCES + SENTENCES[:2], padding=True, return_tensors="pt")  # the last two rows repeat
    ids, mask = batch["input_ids"], batch["attention_mask"]
    torch.manual_seed(0)
    generated = diffcse_module.CausalGenerator(lm).edits(ids, mask, tok, 0.5)
    special = set(tok.all_special_ids)
    changed = 0
    for r in range(len(ids)):
        for c in range(ids.shape[1]):
            if generated[r, c] == ids[r, c]:
                continue
            changed += 1
            assert c > 0 and mask[r, c] == 1 and mask[r, c - 1] == 1 and int(ids[r, c]) not in special
            with torch.no_grad():  # the prefix alone, without padding: the LM's argmax after it
                expected = lm(input_ids=ids[r:r + 1, :c]).logits[0, -1].argmax()
            assert generated[r, c] == expected
    assert changed > 5
    # which positions are drawn follows the global RNG: the same seed gives the same edits
    torch.manual_seed(0)
    assert torch.equal(diffcse_module.CausalGenerator(lm).edits(ids, mask, tok, 0.5), generated)


def test_diffcse_with_a_causal_generator_on_a_decoder_encoder_conditions_position_0(monkeypatch):
    from transformers import LlamaModel

    lm, tok = _tiny_llama_lm()
    decoder = LlamaModel(lm.config).train()
    encoder = SentenceEncoder(decoder, tok, "avg")
    head = DiffCSE(encoder, diffcse_module.CausalGenerator(lm), pooler_type="avg", lambda_weight=1.0)
    batch = tok(SENTENCES[:3], padding=True, return_tensors="pt")
    h = torch.randn(3, lm.config.hidden_size)
    head.discriminator.eval()
    logits = head.discriminate(batch["input_ids"], batch["attention_mask"], h)
    embeds = head.discriminator.get_input_embeddings()(batch["input_ids"]).clone()
    embeds[:, 0] = h  # by hand: the first input embedding is h, the rest the tokens'
    hidden = head.discriminator(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.allclose(logits, head.electra_head(hidden), atol=1e-6)
    head.discriminator.train()
    loss = head.loss(encoder, {"sent0": tok(SENTENCES)["input_ids"]})
    loss.backward()
    assert torch.isfinite(loss) and decoder.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert 0 < float(head.last_stats["replaced_fraction"]) < 1


def test_projector_linear_layers_start_from_bert_normal_init():
    torch.manual_seed(0)
    mlp = ProjectionMLP(256, initializer_range=0.02)
    for layer in (mlp.net[0], mlp.net[3]):
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.02)  # 131,072 draws
    # PyTorch's default (kaiming uniform, bound 1/sqrt(fan_in)) would give std 1/sqrt(3 * 256) = 0.036


def test_the_generator_follows_the_heads_train_and_eval_mode(generator):
    head = DiffCSE(_encoder(), generator)
    head.train()
    assert head.generator.training and any(m.training for m in head.generator.modules())
    head.eval()
    assert not head.generator.training and not any(m.training for m in head.generator.modules())
    assert all(not p.requires_grad for p in head.generator.parameters())  # still frozen
    head.train()
