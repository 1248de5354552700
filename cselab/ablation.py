"""Ablations over several seeds: some seeds run live, the others are read from a committed recording.

A paper's ablation is a difference of a point or two, and one seed cannot tell that from noise. On
two CPU cores a `ci` chapter has time for one seed per variant. So it runs its own ``SEED`` live
and reads the other seeds from ``data/ablations/<name>.json``. That file was recorded by running
the same chapter with every seed live (``make ablations``). A recorded run is used only when its
configuration equals the live one up to the seed. A seed that ran both ways is compared with its
recorded twin, so a stale recording shows.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from cselab.data.core import COURSE_DATA_DIR
from cselab.train import CONFIG_FILE, TrainResult

RECORD_DIR = COURSE_DATA_DIR / "ablations"
MACHINE_FIELDS = ("seed", "device")  # config fields that may differ between a recorded and a live run


def mean_sd(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the sd of one value is 0."""
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def live_seeds(profile: str, seed: int, seeds: Iterable[int]) -> tuple[int, ...]:
    """The seeds a chapter runs now: in ``ci`` only its own ``seed`` (the others are recorded), else
    ``seed`` and every ablation seed."""
    return (seed,) if profile == "ci" else tuple(dict.fromkeys((seed, *seeds)))


@dataclass
class SeedRuns:
    """The final (and step-0) score of every (variant, seed), live or recorded."""

    variants: list[str]
    seeds: list[int]
    initial: dict[tuple[str, int], float] = field(default_factory=dict)
    final: dict[tuple[str, int], float] = field(default_factory=dict)
    live: dict[tuple[str, int], TrainResult] = field(default_factory=dict)  # the runs of this session
    drift: float | None = None  # max |live - recorded| final score over the seeds run both ways
    source: str = ""  # one line: which seeds ran live, where the others come from

    def scores(self, variant: str) -> list[float]:
        """The final scores of ``variant``, in the order of :attr:`seeds` (seeds it lacks left out)."""
        return [self.final[variant, s] for s in self.seeds if (variant, s) in self.final]

    def mean_sd(self, variant: str) -> tuple[float, float]:
        """Mean and sample standard deviation (n - 1) of the final scores; sd is 0 for one seed."""
        return mean_sd(self.scores(variant))

    def paired(self, a: str, b: str) -> list[float]:
        """Per seed, final score of ``a`` minus that of ``b``: the same seed means the same data order."""
        both = [s for s in self.seeds if (a, s) in self.final and (b, s) in self.final]
        return [self.final[a, s] - self.final[b, s] for s in both]

    def direction(self, a: str, b: str) -> str:
        """One line on a paper's claim "``a`` ends above ``b``": the per-seed differences (mean ± sd), and
        whether the claim holds in every seed, on average, within the spread of the differences, or reversed."""
        d = self.paired(a, b)
        m, sd = mean_sd(d)
        above = sum(x > 0 for x in d)
        reading = ("one seed only: cannot tell" if len(d) == 1 else
                   "no difference: every seed within 0.01" if max(abs(x) for x in d) < 0.01 else
                   "within the spread of the differences: not shown at this scale" if abs(m) <= sd else
                   "holds in every seed" if above == len(d) else
                   "holds on average" if m > 0 else "reversed")
        return (f"{a} minus {b}: {m:+.2f} ± {sd:.2f} (mean ± sd of the {len(d)} per-seed differences, above in "
                f"{above}); the paper's direction: {reading}")

    def table(self, paper: dict[str, str] | None = None) -> str:
        """Variants by seeds (``*`` = this notebook's run), mean ± sd, and the paper's value when given."""
        cols = "".join(f"{f'seed {s}' + ('*' if any(k[1] == s for k in self.live) else ''):>10}" for s in self.seeds)
        lines = [f"{'variant':<28}{cols}{'mean ± sd':>16}" + (f"{'paper':>18}" if paper else "")]
        per_seed = [[v for (_, s2), v in self.initial.items() if s2 == s] for s in self.seeds]
        if any(max(x) - min(x) > 0.01 for x in per_seed if x):  # e.g. methods that pool differently
            lines.append(f"{'step 0 (before training)':<28}differs between the variants (each is scored as it "
                         "evaluates): compare a variant with its own step 0")
        elif all(per_seed):
            starts = [statistics.fmean(x) for x in per_seed]
            m, sd = mean_sd(starts)
            lines.append(f"{'step 0 (before training)':<28}" + "".join(f"{x:10.2f}" for x in starts)
                         + f"{m:>9.2f} ± {sd:4.2f}")
        for v in self.variants:
            row = "".join(f"{self.final[v, s]:10.2f}" if (v, s) in self.final else f"{'-':>10}" for s in self.seeds)
            m, sd = self.mean_sd(v)
            lines.append(f"{v:<28}{row}{m:>9.2f} ± {sd:4.2f}" + (f"{paper.get(v, '-'):>18}" if paper else ""))
        if self.live and any(k not in self.live for k in self.final):
            lines.append("* = this notebook's run (trained now, or loaded from its run folder); "
                         "the other seeds are recorded runs of the same setting")
        return "\n".join(lines)


def record_path(name: str, record_dir: Path = RECORD_DIR) -> Path:
    return Path(record_dir) / f"{name}.json"


def _saved_config(result: TrainResult) -> dict:
    """The run's configuration, with paths inside the course checkout written as ``<course>/...`` so that a
    recording made in one clone matches the same run in another."""
    root = str(COURSE_DATA_DIR.parent) + os.sep
    config = json.loads((Path(result.output_dir) / CONFIG_FILE).read_text("utf-8"))
    return {k: f"<course>/{v[len(root):]}" if isinstance(v, str) and v.startswith(root) else v
            for k, v in config.items()}


def _same_setting(recorded: dict, live: dict) -> str | None:
    """None when two configurations differ only in :data:`MACHINE_FIELDS`, else the first field that differs."""
    for key in sorted(set(recorded) | set(live)):
        if key not in MACHINE_FIELDS and recorded.get(key) != live.get(key):
            return f"{key} = {recorded.get(key)!r} recorded, {live.get(key)!r} here"
    return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=COURSE_DATA_DIR.parent, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or "unknown CPU")


def _provenance(name: str, seconds: float) -> dict:
    import torch

    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--", "cselab") else ""
    return {"recorded_by": f"the chapter run with every seed live (RECORD_ABLATION = True; make ablations) for {name}",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _git("rev-parse", "--short", "HEAD") + dirty,
            "machine": f"{_cpu_name()}, {platform.system()}", "torch": torch.__version__, "seconds": round(seconds)}


def _write(path: Path, runs: SeedRuns, identity: dict, seconds: float) -> None:
    rows = [{"variant": v, "seed": s, "initial_score": runs.initial[v, s], "final_score": runs.final[v, s],
             "config": _saved_config(runs.live[v, s])} for v in runs.variants for s in runs.seeds]
    doc = {"name": path.stem, "identity": identity, "provenance": _provenance(path.stem, seconds), "runs": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")  # never leave a half-written recording
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", "utf-8")
    tmp.replace(path)


def _read(path: Path, runs: SeedRuns, identity: dict, wanted: list[int]) -> str:
    """Fill ``runs`` with recorded seeds; returns the line that says what was used and why."""
    if not path.is_file():
        return f"no recording at {path}: the table has the live seeds only"
    try:
        doc = json.loads(path.read_text("utf-8"))
        recorded = {(r["variant"], r["seed"]): r for r in doc["runs"]}
        made = doc["provenance"]
        made = f"{made['date']} at commit {made['commit']} on {made['machine']}"
    except (ValueError, KeyError, TypeError) as exc:
        return (f"{path} is not a recording cselab can read ({type(exc).__name__}: {exc}); `make ablations` "
                "rewrites it: the table has the live seeds only")
    if doc.get("identity") != identity:
        return (f"{path.name} was recorded with {doc.get('identity')}, this run has {identity}: "
                "the table has the live seeds only")
    for v in runs.variants:
        here = next(_saved_config(res) for (v2, _), res in runs.live.items() if v2 == v)
        there = next((r["config"] for (v2, _), r in recorded.items() if v2 == v), None)
        why = "no recorded run" if there is None else _same_setting(there, here)
        if why:
            return (f"{path.name} does not match this setting (variant {v!r}: {why}): "
                    "the table has the live seeds only")
    drifts = []
    for (v, s), r in recorded.items():
        if v not in runs.variants or s not in wanted:
            continue
        if (v, s) in runs.final:
            drifts.append(abs(runs.final[v, s] - r["final_score"]))
        else:
            runs.initial[v, s], runs.final[v, s] = r["initial_score"], r["final_score"]
    runs.drift = max(drifts) if drifts else None
    check = ("" if runs.drift is None else
             f"; the live seed ends within {runs.drift:.2f} points of its recorded run")
    return f"other seeds recorded {made} ({path.name}){check}"


def over_seeds(run: Callable[[str, int], TrainResult], variants: Iterable[str], seeds: Iterable[int],
               live: Iterable[int] | str, record: str, identity: dict | None = None, *, write: bool = False,
               record_dir: Path = RECORD_DIR) -> SeedRuns:
    """Every variant over ``seeds``: ``run(variant, seed)`` for the ``live`` seeds ("all": every seed),
    the rest from the recording ``record`` made with the same settings and ``identity`` (JSON values,
    e.g. which evaluation set). ``write=True`` runs every seed live and (re)writes the recording.
    """
    variants, seeds = list(variants), list(dict.fromkeys(seeds))
    every = write or live == "all"
    live_seeds = list(dict.fromkeys(([] if live == "all" else list(live)) + (seeds if every else [])))
    runs = SeedRuns(variants, seeds + [s for s in live_seeds if s not in seeds])
    identity = dict(identity or {})
    started = datetime.datetime.now()
    for v in variants:
        for s in live_seeds:
            res = run(v, s)
            runs.live[v, s] = res
            runs.initial[v, s], runs.final[v, s] = res.initial_score, res.final_score
    path = record_path(record, record_dir)
    live_part = f"seed{'s' if len(live_seeds) > 1 else ''} {', '.join(map(str, live_seeds))} live"
    if write:
        _write(path, runs, identity, (datetime.datetime.now() - started).total_seconds())
        runs.source = f"{live_part}; recorded to {path}"
    elif set(seeds) <= set(live_seeds):
        runs.source = live_part
    else:
        runs.source = f"{live_part}; " + _read(path, runs, identity, seeds)
    runs.seeds = [s for s in runs.seeds if any(k[1] == s for k in runs.final)]  # drop seeds nobody ran
    print(runs.source)
    return runs
