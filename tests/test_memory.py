"""Tests for cselab.memory (ESimCSE momentum encoder and queue) against independent references.

EMA expectations are the formula evaluated in float64 numpy on snapshots taken before the
update; the queue is compared with a plain Python list; the ESimCSE loss with a queue is
checked against a per-row numpy loop and, for an empty queue, against ``info_nce``.
Background: reference/methods.md §5.2, §5.4, §14 item 4.
"""
from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load, save
from torch import nn

from cselab.encoders import tiny_bert
from cselab.losses import cosine_matrix, info_nce
from cselab.memory import EmbeddingQueue, MomentumEncoder


# ---------------------------------------------------------------------------- helpers
def _randn(seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _snapshot(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in module.named_parameters()}


def _perturb(module: nn.Module, seed: int, scale: float = 0.1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _linear(seed: int) -> nn.Linear:
    lin = nn.Linear(4, 3).double()
    with torch.no_grad():
        lin.weight.copy_(_randn(seed, 3, 4))
        lin.bias.copy_(_randn(seed + 1, 3))
    return lin


@pytest.fixture(scope="module")
def bert():
    model, tokenizer = tiny_bert(seed=0)
    return model, tokenizer


def _batch(tokenizer):
    return tokenizer(["a man is playing a guitar .", "the cat sat"], padding=True, return_tensors="pt")


# ---------------------------------------------------------------------------- EMA update
@pytest.mark.parametrize("m", [0.0, 0.5, 0.9, 0.995, 1.0])
def test_ema_update_matches_formula_on_linear(m):
    online = _linear(0)
    ema = MomentumEncoder(online, momentum=m)
    for step in range(3):
        _perturb(online, seed=10 + step, scale=1.0)
        before, theta = _snapshot(ema.model), _snapshot(online)
        ema.update(online)
        after = _snapshot(ema.model)
        for name in before:
            np.testing.assert_allclose(after[name], m * before[name] + (1 - m) * theta[name], rtol=0, atol=1e-12)


def test_ema_update_matches_formula_on_tiny_bert(bert):
    online, _ = tiny_bert(seed=0)
    ema = MomentumEncoder(online, momentum=0.995, init="random", seed=1)
    for step in range(2):
        _perturb(online, seed=20 + step)
        before, theta = _snapshot(ema.model), _snapshot(online)
        ema.update(online)
        after = _snapshot(ema.model)
        assert after.keys() == theta.keys()
        for name in before:
            np.testing.assert_allclose(after[name], 0.995 * before[name] + 0.005 * theta[name], rtol=0, atol=1e-6)


def test_momentum_zero_copies_and_one_freezes():
    online = _linear(0)
    zero, one = MomentumEncoder(online, 0.0, init="random"), MomentumEncoder(online, 1.0, init="random")
    frozen = _snapshot(one.model)
    _perturb(online, seed=1, scale=1.0)
    zero.update(online)
    one.update(online)
    for name, value in _snapshot(online).items():
        np.testing.assert_array_equal(_snapshot(zero.model)[name], value)
        np.testing.assert_array_equal(_snapshot(one.model)[name], frozen[name])


def test_random_part_decays_as_momentum_power():
    """With a fixed online model, theta_m - theta shrinks by m per step: 0.995**500 ~ 0.08 (§5.2)."""
    online = _linear(0)
    ema = MomentumEncoder(online, 0.995, init="random", seed=3)
    gap0 = (ema.model.weight - online.weight).detach().clone()
    for _ in range(500):
        ema.update(online)
    torch.testing.assert_close(ema.model.weight - online.weight, gap0 * 0.995**500, rtol=1e-9, atol=1e-12)
    assert 0.995**500 == pytest.approx(0.0816, abs=1e-3)


def test_buffers_are_copied():
    online = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = MomentumEncoder(online, 0.9)
    online.train()
    online(torch.randn(8, 3))  # moves the running statistics
    ema.update(online)
    for (name, ours), (_, theirs) in zip(ema.model.named_buffers(), online.named_buffers()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)


def test_update_rejects_another_architecture():
    ema = MomentumEncoder(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="shape"):
        ema.update(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="lacks"):
        ema.update(nn.Sequential(nn.Linear(4, 3)))


# ---------------------------------------------------------------------------- init
def test_init_copy_equals_online_and_is_independent(bert):
    online, _ = bert
    ema = MomentumEncoder(online)
    for (name, ours), (_, theirs) in zip(ema.model.named_parameters(), online.named_parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)
        assert ours.data_ptr() != theirs.data_ptr()


def test_init_random_is_a_fresh_model_of_the_same_architecture(bert):
    online, _ = bert
    ema = MomentumEncoder(online, init="random", seed=1)
    fresh_ref, _ = tiny_bert(seed=1)  # type(model)(config) under its own fork_rng + manual_seed(1)
    for (name, ours), (_, ref), (_, on) in zip(ema.model.named_parameters(), fresh_ref.named_parameters(),
                                               online.named_parameters()):
        assert ours.shape == on.shape
        torch.testing.assert_close(ours, ref, rtol=0, atol=0, msg=name)
    assert not torch.equal(ema.model.embeddings.word_embeddings.weight, online.embeddings.word_embeddings.weight)
    assert type(ema.model) is type(online)


def test_init_random_is_deterministic_in_seed_and_leaves_global_rng(bert):
    online, _ = bert
    state = torch.get_rng_state()
    a = MomentumEncoder(online, init="random", seed=5)
    b = MomentumEncoder(online, init="random", seed=5)
    c = MomentumEncoder(online, init="random", seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), (_, pb), (_, pc) in zip(a.model.named_parameters(), b.model.named_parameters(),
                                            c.model.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)
    assert not torch.equal(a.model.embeddings.word_embeddings.weight, c.model.embeddings.word_embeddings.weight)


def test_init_random_on_plain_modules():
    online = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    _perturb(online, seed=0, scale=1.0)  # LayerNorm is no longer (1, 0)
    state = torch.get_rng_state()
    a, b = MomentumEncoder(online, init="random", seed=2), MomentumEncoder(online, init="random", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), (_, pb), (_, on) in zip(a.model.named_parameters(), b.model.named_parameters(),
                                            online.named_parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, on), name
    torch.testing.assert_close(a.model[1].weight, torch.ones(4))


def test_init_random_needs_reset_parameters():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match="reset_parameters"):
        MomentumEncoder(Scale(), init="random")
    MomentumEncoder(Scale(), init="copy")


def test_init_random_reports_an_architecture_its_config_does_not_describe(bert):
    from transformers import BertModel

    online = BertModel(bert[0].config)
    online.extra = torch.nn.Linear(4, 4)  # a module the config does not describe
    with pytest.raises(ValueError, match="init='copy'"):
        MomentumEncoder(online, init="random")
    MomentumEncoder(online, init="copy").update(online)


def test_init_random_rebuilds_a_model_loaded_without_pooler(bert):
    """Hub roberta-base now loads without pooler weights; ESimCSE's random momentum start must follow."""
    from transformers import BertModel

    online = BertModel(bert[0].config, add_pooling_layer=False)
    ema = MomentumEncoder(online, init="random")
    assert getattr(ema.model, "pooler", None) is None
    assert {n for n, _ in ema.model.named_parameters()} == {n for n, _ in online.named_parameters()}
    ema.update(online)


# ---------------------------------------------------------------------------- no grad, eval mode
def test_no_parameter_requires_grad_and_online_untouched(bert):
    online, _ = bert
    ema = MomentumEncoder(online)
    assert all(not p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in online.parameters())


def test_always_in_eval_mode(bert):
    online, tokenizer = bert
    ema = MomentumEncoder(online)
    parent = nn.ModuleDict({"online": online, "momentum": ema})
    for call in (lambda: ema.train(), lambda: ema.train(True), lambda: parent.train()):
        call()
        assert not ema.training
        assert all(not module.training for module in ema.modules())
    assert online.training  # the parent's .train() still reaches the online model
    batch = _batch(tokenizer)
    first, second = ema(**batch).last_hidden_state, ema(**batch).last_hidden_state
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # dropout (p = 0.1) is off
    online.eval()


def test_forward_builds_no_graph(bert):
    online, tokenizer = bert
    ema = MomentumEncoder(online)
    with torch.enable_grad():
        out = ema(**_batch(tokenizer))
    assert not out.last_hidden_state.requires_grad and out.last_hidden_state.grad_fn is None


@pytest.mark.parametrize("m", [-0.1, 1.5, float("nan"), "0.9", True])
def test_bad_momentum(m):
    with pytest.raises(ValueError, match="momentum"):
        MomentumEncoder(nn.Linear(2, 2), momentum=m)


def test_bad_init():
    with pytest.raises(ValueError, match="init"):
        MomentumEncoder(nn.Linear(2, 2), init="zeros")


def test_momentum_encoder_state_dict_round_trip():
    online = _linear(0)
    ema = MomentumEncoder(online, 0.9, init="random", seed=1)
    _perturb(online, 3, 1.0)
    ema.update(online)
    restored = MomentumEncoder(_linear(7), 0.9)
    restored.load_state_dict(load(save(ema.state_dict())))
    for (name, a), (_, b) in zip(ema.named_parameters(), restored.named_parameters()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------------------- queue
@pytest.mark.parametrize("size", [1, 3, 5, 8])
def test_queue_is_fifo(size):
    dim, rnd = 4, random.Random(size)
    queue, model, counter = EmbeddingQueue(size, dim), [], 0
    assert queue.embeddings() is None and len(queue) == 0
    for _ in range(60):
        n = rnd.choice([0, 1, 2, size - 1, size, size + 1, 2 * size + 3, rnd.randint(0, 3 * size)])
        n = max(n, 0)
        rows = [[float(counter + i)] * dim for i in range(n)]
        counter += n
        queue.enqueue(torch.tensor(rows, dtype=torch.float32).reshape(n, dim))
        model = (model + rows)[-size:]
        got = queue.embeddings()
        assert len(queue) == len(model)
        if not model:
            assert got is None
        else:
            assert got.shape == (len(model), dim)
            assert got.tolist() == model


def test_queue_reset():
    queue = EmbeddingQueue(4, 2)
    queue.enqueue(torch.ones(3, 2))
    queue.enqueue(torch.full((3, 2), 2.0))
    queue.reset()
    assert queue.embeddings() is None and len(queue) == 0 and not queue
    queue.enqueue(torch.full((1, 2), 5.0))
    assert queue.embeddings().tolist() == [[5.0, 5.0]]


def test_queue_size_zero_is_no_queue():
    queue = EmbeddingQueue(0, 3)
    for n in (0, 1, 5):
        queue.enqueue(torch.randn(n, 3))
        assert queue.embeddings() is None and len(queue) == 0
    assert queue.state_dict()["queue"].shape == (0, 3)


def test_queue_state_dict_round_trip_resumes_exactly():
    queue = EmbeddingQueue(5, 3)
    for n in (2, 4, 1):  # wraps around: ptr != 0
        queue.enqueue(_randn(n, n, 3, dtype=torch.float32))
    fresh = EmbeddingQueue(5, 3)
    fresh.load_state_dict(load(save(queue.state_dict())))  # safetensors, as cselab.checkpoints
    assert torch.equal(fresh.embeddings(), queue.embeddings()) and len(fresh) == len(queue)
    buffer = io.BytesIO()
    torch.save(queue.state_dict(), buffer)
    buffer.seek(0)
    other = EmbeddingQueue(5, 3)
    other.load_state_dict(torch.load(buffer))
    for q in (queue, fresh, other):
        q.enqueue(torch.full((2, 3), 9.0))
    assert torch.equal(fresh.embeddings(), queue.embeddings())
    assert torch.equal(other.embeddings(), queue.embeddings())


def test_queue_stores_detached_rows():
    leaf = torch.randn(3, 4, requires_grad=True)
    z = leaf * 2  # non-leaf, has a graph
    queue = EmbeddingQueue(8, 4)
    queue.enqueue(z)
    stored = queue.embeddings()
    assert not stored.requires_grad and stored.grad_fn is None
    assert not queue.queue.requires_grad and queue.queue.grad_fn is None
    torch.testing.assert_close(stored, (leaf * 2).detach())


def test_queue_returns_a_copy():
    queue = EmbeddingQueue(3, 2)
    queue.enqueue(torch.ones(2, 2))
    queue.embeddings().zero_()
    assert queue.embeddings().tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_queue_follows_module_dtype():
    queue = EmbeddingQueue(4, 2).to(torch.float64)
    queue.enqueue(torch.ones(2, 2, dtype=torch.float32))
    assert queue.embeddings().dtype == torch.float64
    assert queue.count.dtype == torch.long


def test_queue_validation():
    for size in (-1, 2.5, None):
        with pytest.raises(ValueError, match="size"):
            EmbeddingQueue(size, 4)
    with pytest.raises(ValueError, match="dim"):
        EmbeddingQueue(4, 0)
    queue = EmbeddingQueue(4, 3)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        queue.enqueue(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        queue.enqueue(torch.randn(3))


# ---------------------------------------------------------------------------- ESimCSE loss with a queue
def esimcse_loss(z1: torch.Tensor, z2: torch.Tensor, queue: torch.Tensor | None, tau: float = 0.05):
    """ESimCSE ``cl_forward``: CE over [cos(z1, z2) (B x B) | cos(z1, queue) (B x M)] / tau, targets arange(B).

    ``info_nce(negatives=...)`` is not this: it takes exactly B negatives, negatives[i] being row i's own.
    """
    logits = cosine_matrix(z1, z2) / tau  # (B, B)
    if queue is not None:
        logits = torch.cat([logits, cosine_matrix(z1, queue) / tau], dim=1)  # (B, B + M)
    return F.cross_entropy(logits, torch.arange(z1.shape[0]))


def numpy_esimcse(z1, z2, queue, tau):
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    a, p = unit(np.asarray(z1, np.float64)), unit(np.asarray(z2, np.float64))
    q = np.zeros((0, a.shape[1])) if queue is None else unit(np.asarray(queue, np.float64))
    losses = []
    for i in range(len(a)):
        scores = [a[i] @ p[j] / tau for j in range(len(p))] + [a[i] @ q[k] / tau for k in range(len(q))]
        losses.append(-scores[i] + math.log(sum(math.exp(s) for s in scores)))
    return float(np.mean(losses))


def test_queue_size_zero_equals_in_batch_info_nce():
    z1, z2 = _randn(0, 6, 8), _randn(1, 6, 8)
    queue = EmbeddingQueue(0, 8)
    queue.enqueue(_randn(2, 6, 8))
    assert queue.embeddings() is None
    got = esimcse_loss(z1, z2, queue.embeddings(), 0.05)
    torch.testing.assert_close(got, info_nce(z1, z2, temperature=0.05), rtol=0, atol=1e-12)
    assert got.item() == pytest.approx(numpy_esimcse(z1, z2, None, 0.05), abs=1e-9)


@pytest.mark.parametrize("size,pushes", [(4, [3]), (10, [6, 6, 6]), (16, [20])])
def test_loss_with_queue_matches_numpy(size, pushes):
    batch, dim = 6, 8
    z1 = _randn(0, batch, dim).requires_grad_(True)
    z2 = _randn(1, batch, dim)
    queue = EmbeddingQueue(size, dim).double()
    for k, n in enumerate(pushes):
        queue.enqueue(_randn(10 + k, n, dim))
    negatives = queue.embeddings()
    assert negatives.shape == (min(size, sum(pushes)), dim)
    loss = esimcse_loss(z1, z2, negatives, 0.05)
    assert loss.item() == pytest.approx(numpy_esimcse(z1.detach(), z2, negatives, 0.05), abs=1e-9)
    assert loss.item() > info_nce(z1, z2, temperature=0.05).item()  # more negatives, larger loss
    loss.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
    assert negatives.grad is None and not negatives.requires_grad
    assert queue.queue.grad is None


def test_info_nce_negatives_coincide_only_when_queue_has_batch_rows():
    """With M = B (weight 0) info_nce's hard-negative form is the same matrix; otherwise it refuses."""
    z1, z2 = _randn(0, 5, 8), _randn(1, 5, 8)
    queue = EmbeddingQueue(5, 8).double()
    queue.enqueue(_randn(2, 7, 8))
    torch.testing.assert_close(info_nce(z1, z2, 0.05, negatives=queue.embeddings()),
                               esimcse_loss(z1, z2, queue.embeddings(), 0.05), rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        info_nce(z1, z2, 0.05, negatives=_randn(3, 4, 8))


def test_random_init_of_a_truncated_decoder_keeps_its_config_entry():
    """A random momentum start of cselab/smollm2-2l-like models must skip the final norm and keep the dropout
    module, as the online model does (both come from the config entry, not from the weights)."""
    from transformers import LlamaConfig, LlamaModel

    from cselab.encoders import TRUNCATED_DECODER_KEY, adapt_truncated_decoder

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1,
                         **{TRUNCATED_DECODER_KEY: {"final_norm": False, "frozen_layers": 1, "dropout_after_layer": 0}})
    online = adapt_truncated_decoder(LlamaModel(config))
    momentum = MomentumEncoder(online, init="random", seed=3).model
    x = torch.randn(2, 5, 16) * 7
    assert torch.equal(momentum.norm(x), x)  # the final RMSNorm is skipped, as online
    assert not torch.equal(LlamaModel(config).norm(x), x)  # a plain LlamaModel would normalise
    assert hasattr(momentum, "block_dropout")
    assert not torch.equal(momentum.layers[1].mlp.up_proj.weight, online.layers[1].mlp.up_proj.weight)  # random
