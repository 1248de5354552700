"""What every exercise check shares: seeded cases, tolerances, and messages that name the failing input."""
from __future__ import annotations

from typing import Callable

import torch


class _Case:
    def __init__(self, label: str, args: tuple):
        self.label, self.args = label, args


def _close(a, b, tol: float) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=tol, rtol=tol))


def _prediction_dict(exercise: str, fn: Callable, keys, entry: str, noun: str) -> dict:
    """A predict-then-run answer: ``fn()`` must return a dict with exactly ``keys`` (one prediction each)."""
    try:
        predictions = fn()
    except NotImplementedError:
        raise AssertionError(f"{exercise}: not implemented yet -- replace the `raise NotImplementedError` "
                             "line.") from None
    if predictions is None:
        raise AssertionError(f"{exercise}: your function returned None; did you forget `return`?")
    if not isinstance(predictions, dict):
        raise AssertionError(f"{exercise}: return a dict {{{entry}}} with the keys {list(keys)}; "
                             f"you return a {type(predictions).__name__}.")
    missing = [k for k in keys if k not in predictions]
    unknown = [k for k in predictions if k not in keys]
    if missing or unknown:
        raise AssertionError(f"{exercise}: predict every {noun} exactly once. Missing: {missing or 'none'}; "
                             f"unknown keys (check the spelling): {unknown or 'none'}.")
    return predictions


def _check(exercise: str, learner: Callable, reference: Callable, cases: list[_Case],
           mistakes: list[tuple[Callable, str]] = (), tol: float = 1e-5) -> None:
    for case in cases:
        try:
            got = learner(*case.args)
        except NotImplementedError:
            raise AssertionError(f"{exercise}: not implemented yet -- replace the `raise NotImplementedError` line.") from None
        if got is None:
            raise AssertionError(f"{exercise}: your function returned None on {case.label}; did you forget `return`?")
        want = reference(*case.args)
        got_t, want_t = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
        if got_t.shape != want_t.shape:
            raise AssertionError(
                f"{exercise}: on {case.label} the result has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}."
            )
        if not _close(got_t, want_t, tol):
            hint = ""
            for wrong, message in mistakes:
                if _close(got_t, wrong(*case.args), tol):
                    hint = f"\nHint: {message}"
                    break
            shown = lambda t: f"{t.item():.6f}" if t.numel() == 1 else f"{t.flatten()[:4].tolist()} ..."  # noqa: E731
            raise AssertionError(
                f"{exercise}: on {case.label} you return {shown(got_t)}, expected {shown(want_t)}.{hint}"
            )
    print(f"{exercise}: correct on {len(cases)} test inputs.")


def _embeddings(seed: int, batch: int, dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g, dtype=torch.float64)
