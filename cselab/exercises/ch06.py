"""Exercise checks of chapter 06."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._checking import _Case, _check, _prediction_dict


def _rtd_batch(seed: int, n: int, seq: int, vocab: int = 40, cls_id: int = 2):
    """Seeded DiffCSE-like ids: original (n, seq) with [CLS] first and zero padding, a generator output
    that changes some real tokens, writes other ids at padding, and overwrites position 0 in some rows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, seq + 1, (n,), generator=g)
    lengths[0], lengths[-1] = seq, 2  # one full row, one row with [CLS] and one token only
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    original = torch.randint(5, vocab, (n, seq), generator=g) * mask
    original[:, 0] = cls_id
    generated = original.clone()
    change = torch.rand(n, seq, generator=g) < 0.3
    generated[change] = torch.randint(5, vocab, (int(change.sum()),), generator=g)
    generated[mask == 0] = torch.randint(5, vocab, (int((mask == 0).sum()),), generator=g)  # MLMs write at padding
    generated[::2, 0] = cls_id + 1  # the generator does not keep [CLS] in every row
    return original, generated, mask


def check_changed_input_share(fn: Callable) -> None:
    """Exercise 6.1: ``fn(masking_ratio, vocab_size)`` = the expected share of the maskable tokens whose id in
    the generator's INPUT differs from the original under BERT's 80/10/10 masking, the random ids being drawn
    uniformly from all ``vocab_size`` ids (as ``cselab.augment.mask_tokens`` and the official code do)."""
    # the first case tells every known mistake apart; a vocabulary of 2 makes the 1 / V term large, 30522
    # (BERT's) makes it tiny but not zero; ratios 0 and 1 are the edges
    cases = [_Case(f"masking_ratio={p}, vocab_size={v}", (p, v))
             for p, v in [(0.3, 5), (0.15, 30522), (0.3, 8000), (0.5, 2), (0.0, 100), (1.0, 10)]]

    def reference(p, v):
        return p * (0.8 + 0.1 * (v - 1) / v)

    _check("Exercise 6.1", fn, reference, cases, [
        (lambda p, v: p, "not every selected token changes: 10 % of them are left as they are (the generator sees "
         "the original id there), and a random id can happen to be the original one."),
        (lambda p, v: 0.8 * p, "the 10 % that get a random id change the input too (unless the random id happens "
         "to be the original one)."),
        (lambda p, v: 0.9 * p, "a random id is drawn from ALL vocab_size ids, so with probability 1 / vocab_size "
         "it is the original id and that position does not change."),
        (lambda p, v: 0.8 + 0.1 * (v - 1) / v, "multiply by masking_ratio: only the selected tokens can change."),
        (lambda p, v: p * (0.8 + 0.2 * (v - 1) / v), "of the 20 % that do not become [MASK], half get a random id "
         "and half stay as they are: 10 % random, not 20 %."),
        (lambda p, v: p * (0.8 + 0.1 * (v - 2) / (v - 1)), "the random id is drawn from all vocab_size ids, the "
         "original one included: it equals the original with probability 1 / vocab_size."),
    ], tol=1e-12)


def _rtd_logits(seed: int, n: int, seq: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, seq, 2, generator=g, dtype=torch.float64)


def check_rtd_loss(fn: Callable) -> None:
    """Exercise 6.2: ``fn(logits, labels, attention_mask, include_padding)`` = DiffCSE's RTD cross-entropy.

    logits (n, seq, 2), labels and mask (n, seq); the mean over all n * seq positions
    (``include_padding=True``, official) or over the real tokens only.
    """
    cases = []
    for i, (n, s, pad) in enumerate([(4, 7, False), (4, 7, True), (6, 10, False), (3, 3, True), (5, 8, True)]):
        x, g, m = _rtd_batch(70 + i, n, s)
        g[:, 0] = x[:, 0]
        labels = (g != x).long() * m
        cases.append(_Case(f"{n} sequences of length {s}, include_padding={pad}", (_rtd_logits(80 + i, n, s),
                                                                                  labels, m, pad)))

    def per_token(logits, labels):
        return F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1).long(), reduction="none")

    def reference(logits, labels, m, pad):
        ce = per_token(logits, labels)
        w = m.reshape(-1).to(ce.dtype)
        return ce.mean() if pad else (ce * w).sum() / w.sum()

    def sigmoid_of_one_logit(logits, labels, m, pad):
        ce = F.binary_cross_entropy_with_logits(logits[..., 1].reshape(-1), labels.reshape(-1).to(logits.dtype),
                                                reduction="none")
        w = m.reshape(-1).to(ce.dtype)
        return ce.mean() if pad else (ce * w).sum() / w.sum()

    _check("Exercise 6.2", fn, reference, cases, [
        (lambda lg, lb, m, pad: per_token(lg, lb).mean(), "with include_padding=False average over the real tokens "
         "only: weight by the attention mask and divide by its sum."),
        (lambda lg, lb, m, pad: reference(lg, lb, m, False), "with include_padding=True the official code averages "
         "over ALL n * seq positions, padding included (CrossEntropyLoss over view(-1, 2))."),
        (lambda lg, lb, m, pad: (per_token(lg, lb) * m.reshape(-1)).sum() / m.numel(),
         "you zeroed the padding but divided by every position: divide by the number of real tokens "
         "(attention_mask.sum())."),
        (sigmoid_of_one_logit, "the head has TWO logits per position: use a two-way softmax cross-entropy "
         "(F.cross_entropy over the last dimension), not a sigmoid of logit 1."),
        (lambda lg, lb, m, pad: reference(lg, 1 - lb, m, pad), "class 1 is 'replaced': use the labels as they are."),
        (lambda lg, lb, m, pad: reference(lg, lb, m, pad) * (lb.numel() if pad else m.sum()),
         "average over the positions, do not sum."),
    ])


def _rtd_gradient_experiment(seed: int = 0) -> dict[str, bool]:
    """A miniature of DiffCSE's RTD step in plain autograd, for every variant of :data:`RTD_GRADIENT_VARIANTS`:
    ``{variant: whether L_RTD gives the named weights a non-zero gradient}``.

    Sentence encoder: ``h = tanh(features @ W_enc)``. Generator: logits ``E_gen[masked ids]``, argmax. Discriminator:
    token embeddings ``E_dis``, position 0 replaced by ``h``, one mixing step (every position sees the mean of
    all positions, as attention would), a two-way head; cross-entropy against the replaced labels.
    """
    g = torch.Generator().manual_seed(seed)
    n, seq, dim, vocab = 4, 6, 8, 12
    features = torch.randn(n, dim, generator=g, dtype=torch.float64)
    original = torch.randint(1, vocab, (n, seq), generator=g)
    masked = original.masked_fill(torch.rand(n, seq, generator=g) < 0.3, 0)  # id 0 = [MASK]
    w_enc = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    e_gen = torch.randn(vocab, vocab, generator=g, dtype=torch.float64)
    e_dis = torch.randn(vocab, dim, generator=g, dtype=torch.float64)
    w_mix = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    w_head = torch.randn(dim, 2, generator=g, dtype=torch.float64)

    def step(detach=False, conditioned=True, frozen=False, trainable_generator=False):
        enc = w_enc.clone().requires_grad_(True)
        gen = e_gen.clone().requires_grad_(trainable_generator)
        dis = [w.clone().requires_grad_(not frozen) for w in (e_dis, w_mix, w_head)]
        h = torch.tanh(features @ enc)  # (n, dim)
        generated = gen[masked].argmax(-1)  # (n, seq): greedy, at every position
        generated[:, 0] = original[:, 0]
        labels = (generated != original).long()
        x = dis[0][generated]  # (n, seq, dim)
        if conditioned:
            x = torch.cat([(h.detach() if detach else h).unsqueeze(1), x[:, 1:]], dim=1)
        hidden = torch.tanh((x + x.mean(dim=1, keepdim=True)) @ dis[1])
        loss = F.cross_entropy((hidden @ dis[2]).reshape(-1, 2), labels.reshape(-1))
        target = gen if trainable_generator else enc
        if not loss.requires_grad:
            return False
        grad, = torch.autograd.grad(loss, [target], allow_unused=True)
        return grad is not None and bool(grad.abs().sum() > 0)

    return {"encoder, official": step(), "encoder, h detached": step(detach=True),
            "encoder, plain ELECTRA": step(conditioned=False), "encoder, frozen discriminator": step(frozen=True),
            "generator, made trainable": step(trainable_generator=True)}


# variant -> (what changes from the official DiffCSE step, why L_RTD does or does not reach the named weights)
RTD_GRADIENT_VARIANTS = {
    "encoder, official": (
        "the official step: h replaces the discriminator's position-0 input",
        "h is an input of the discriminator and h is computed by the sentence encoder, so the chain rule "
        "carries dL_RTD/dh on into the encoder's weights (section 2 counted the tensors)."),
    "encoder, h detached": (
        "the discriminator is given h.detach() instead of h",
        "detach() cuts the only path from L_RTD to the encoder: the discriminator still learns, the encoder is "
        "trained by the contrastive loss alone, as in SimCSE."),
    "encoder, plain ELECTRA": (
        "no conditioning: the discriminator reads the generated sentence only",
        "the discriminator's input is the generator's output, which does not depend on the encoder: L_RTD has "
        "no path to the encoder (section 2, 'plain ELECTRA')."),
    "encoder, frozen discriminator": (
        "the official step, but the discriminator and electra_head are frozen (requires_grad=False)",
        "freezing a layer stops ITS weights from being updated, not the gradient from flowing through it back to "
        "its inputs. h is an input, so the encoder still gets dL_RTD/dh through the frozen layers."),
    "generator, made trainable": (
        "the official step, with the generator's weights made trainable (requires_grad=True)",
        "the generator's output enters the discriminator as token ids chosen by argmax: a discrete choice, with "
        "no gradient with respect to the logits. The RTD loss cannot train the generator (ELECTRA trains its "
        "generator with a separate MLM loss)."),
}


def check_rtd_gradient_predictions(fn: Callable) -> None:
    """Exercise 6.3: ``fn()`` returns ``{variant: True/False}`` for every variant of
    :data:`RTD_GRADIENT_VARIANTS`: does the RTD loss give the named weights a non-zero gradient?

    Runs the variants on a miniature of DiffCSE's step (:func:`_rtd_gradient_experiment`), prints the
    predictions next to what it measured, and on a wrong prediction raises AssertionError explaining why.
    """
    exercise = "Exercise 6.3"
    predictions = _prediction_dict(exercise, fn, RTD_GRADIENT_VARIANTS, "variant: True or False", "variant")
    for name, value in predictions.items():
        if not isinstance(value, (bool, np.bool_)):
            raise AssertionError(f"{exercise}: your prediction for {name!r} is {value!r}. Write True (the RTD loss "
                                 "gives those weights a non-zero gradient) or False (it gives them none).")
    measured = _rtd_gradient_experiment()
    print(f"{'variant':<32}{'your prediction':>16}{'measured':>10}")
    for name in RTD_GRADIENT_VARIANTS:
        verdict = "right" if bool(predictions[name]) == measured[name] else "WRONG"
        print(f"{name:<32}{str(bool(predictions[name])):>16}{str(measured[name]):>10}   {verdict}")
    wrong = [name for name in RTD_GRADIENT_VARIANTS if bool(predictions[name]) != measured[name]]
    if wrong:
        raise AssertionError(f"{exercise}: {len(wrong)} of {len(RTD_GRADIENT_VARIANTS)} predictions differ from the "
                             "experiment.\n" + "\n".join(
                                 f"- {name} ({RTD_GRADIENT_VARIANTS[name][0]}): you predicted "
                                 f"{bool(predictions[name])}, the experiment gives {measured[name]}. "
                                 f"Why: {RTD_GRADIENT_VARIANTS[name][1]}" for name in wrong))
    print(f"{exercise}: correct on {len(RTD_GRADIENT_VARIANTS)} predictions, each measured on a miniature DiffCSE "
          "step.")
