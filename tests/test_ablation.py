"""cselab.ablation: seeds run live or read from a recording, and the tables and readings over them.

Expected values are computed by hand or with numpy on the fake scores below."""
import dataclasses
import json
import math

import numpy as np
import pytest

from cselab.ablation import SeedRuns, over_seeds, record_path
from cselab.train import CONFIG_FILE, TrainResult

# the final score of every (variant, seed); the step-0 score is 50 + seed
SCORES = {("a", 0): 61.0, ("a", 1): 63.0, ("a", 2): 62.0, ("b", 0): 60.0, ("b", 1): 60.5, ("b", 2): 62.5}


def fake_runner(tmp_path, scores=SCORES, config=None, calls=None):
    """A ``run(variant, seed)`` that writes a run folder with its configuration, as the trainer does."""
    def run(variant, seed):
        out = tmp_path / "runs" / f"{variant}_{seed}"
        out.mkdir(parents=True, exist_ok=True)
        cfg = {"method": "m", "variant": variant, "seed": seed, "device": "cpu", "max_steps": 12, **(config or {})}
        (out / CONFIG_FILE).write_text(json.dumps(cfg), "utf-8")
        if calls is not None:
            calls.append((variant, seed))
        return TrainResult(out, out / "best", 50.0 + seed, scores[variant, seed], 12, scores[variant, seed], 12, 1.0)
    return run


def record(tmp_path, **kw):
    return over_seeds(fake_runner(tmp_path / "rec", **kw), ["a", "b"], [0, 1, 2], live=(0,), record="t",
                      identity={"eval": "dev"}, write=True, record_dir=tmp_path)


def test_recording_then_one_live_seed_reads_the_others(tmp_path, capsys):
    record(tmp_path)
    path = record_path("t", tmp_path)
    doc = json.loads(path.read_text("utf-8"))
    assert len(doc["runs"]) == 6 and doc["identity"] == {"eval": "dev"}
    assert {"date", "commit", "machine", "torch", "recorded_by"} <= set(doc["provenance"])
    assert not list(tmp_path.glob("*.tmp"))

    live_scores = {**SCORES, ("a", 0): 61.3}  # the live seed 0 of "a" ends 0.3 higher than recorded
    calls = []
    runs = over_seeds(fake_runner(tmp_path / "live", live_scores, calls=calls), ["a", "b"], [0, 1, 2], live=(0,),
                      record="t", identity={"eval": "dev"}, record_dir=tmp_path)
    assert calls == [("a", 0), ("b", 0)]  # only seed 0 trained
    assert runs.seeds == [0, 1, 2]
    assert runs.scores("a") == [61.3, 63.0, 62.0]
    assert runs.drift == pytest.approx(0.3)
    m, sd = runs.mean_sd("a")
    assert m == pytest.approx(np.mean([61.3, 63.0, 62.0]))
    assert sd == pytest.approx(np.std([61.3, 63.0, 62.0], ddof=1))
    assert "within 0.30 points of its recorded run" in capsys.readouterr().out


def test_paths_inside_the_course_checkout_match_in_another_clone(tmp_path, capsys, monkeypatch):
    import cselab.ablation as A

    clone_a, clone_b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setattr(A, "COURSE_DATA_DIR", clone_a / "data")
    record(tmp_path, config={"train_file": str(clone_a / "data" / "toy.tsv"), "other": "/elsewhere/x.txt"})
    doc = json.loads(record_path("t", tmp_path).read_text("utf-8"))
    assert {r["config"]["train_file"] for r in doc["runs"]} == {"<course>/data/toy.tsv"}
    assert {r["config"]["other"] for r in doc["runs"]} == {"/elsewhere/x.txt"}  # outside the checkout: as is
    monkeypatch.setattr(A, "COURSE_DATA_DIR", clone_b / "data")  # the same run in another clone
    runs = over_seeds(fake_runner(tmp_path / "live", config={"train_file": str(clone_b / "data" / "toy.tsv"),
                                                             "other": "/elsewhere/x.txt"}),
                      ["a", "b"], [0, 1, 2], live=(0,), record="t", identity={"eval": "dev"}, record_dir=tmp_path)
    assert runs.seeds == [0, 1, 2] and runs.drift == 0.0


def test_a_recording_of_another_setting_is_not_mixed_in(tmp_path, capsys):
    record(tmp_path)
    runs = over_seeds(fake_runner(tmp_path / "live", config={"max_steps": 40}), ["a", "b"], [0, 1, 2], live=(0,),
                      record="t", identity={"eval": "dev"}, record_dir=tmp_path)
    assert runs.seeds == [0] and runs.drift is None
    out = capsys.readouterr().out
    assert "max_steps = 12 recorded, 40 here" in out and "live seeds only" in out


def test_another_identity_or_no_recording_keeps_the_live_seeds_only(tmp_path, capsys):
    record(tmp_path)
    runs = over_seeds(fake_runner(tmp_path / "live"), ["a", "b"], [0, 1, 2], live=(0,), record="t",
                      identity={"eval": "shipped"}, record_dir=tmp_path)
    assert runs.seeds == [0]
    runs = over_seeds(fake_runner(tmp_path / "live"), ["a", "b"], [0, 1, 2], live=(0,), record="missing",
                      identity={"eval": "dev"}, record_dir=tmp_path)
    assert runs.seeds == [0]
    out = capsys.readouterr().out
    assert "was recorded with {'eval': 'dev'}" in out and "no recording at" in out


@pytest.mark.parametrize("text", ["{not json", '{"runs": [{"variant": "a"}]}', "[]"])
def test_an_unreadable_recording_is_named_and_never_used(tmp_path, capsys, text):
    record_path("t", tmp_path).write_text(text, "utf-8")
    runs = over_seeds(fake_runner(tmp_path / "live"), ["a", "b"], [0, 1, 2], live=(0,), record="t",
                      identity={"eval": "dev"}, record_dir=tmp_path)
    assert runs.seeds == [0]
    out = capsys.readouterr().out
    assert f"{record_path('t', tmp_path)} is not a recording cselab can read" in out and "make ablations" in out


def test_a_live_seed_outside_the_list_is_added(tmp_path):
    record(tmp_path)
    scores = {**SCORES, ("a", 5): 70.0, ("b", 5): 65.0}
    runs = over_seeds(fake_runner(tmp_path / "live", scores), ["a", "b"], [0, 1, 2], live=(5,), record="t",
                      identity={"eval": "dev"}, record_dir=tmp_path)
    assert runs.seeds == [0, 1, 2, 5] and runs.drift is None
    assert runs.scores("b") == [60.0, 60.5, 62.5, 65.0]
    assert "seed 5*" in runs.table() and runs.table().endswith("recorded runs of the same setting")


def test_all_live_needs_no_recording(tmp_path, capsys):
    runs = over_seeds(fake_runner(tmp_path), ["a", "b"], [0, 1, 2], live="all", record="none", record_dir=tmp_path)
    assert runs.seeds == [0, 1, 2] and not record_path("none", tmp_path).exists()
    assert capsys.readouterr().out.strip() == "seeds 0, 1, 2 live"


def runs_of(a, b):
    r = SeedRuns(["a", "b"], list(range(len(a))))
    for s, (x, y) in enumerate(zip(a, b)):
        r.final["a", s], r.final["b", s] = x, y
    return r


@pytest.mark.parametrize("a, b, reading", [
    ([62, 63, 64], [60, 61, 63], "holds in every seed"),  # differences 2, 2, 1: mean 1.67 > sd 0.58
    ([70, 70, 59.9], [60, 60, 60], "holds on average"),  # 10, 10, -0.1: mean 6.63 > sd 5.83
    ([60.1, 60.1, 62], [60, 60, 60], "within the spread"),  # 0.1, 0.1, 2.0: all above, but mean 0.73 < sd 1.10
    ([61, 60, 61], [60, 61, 60.5], "within the spread"),  # 1, -1, 0.5: mean 0.17 < sd 1.04
    ([58, 57, 60], [60, 61, 60.5], "reversed"),  # -2, -4, -0.5: mean -2.17, sd 1.76
    ([60.004, 61, 62], [60, 61.003, 62], "no difference"),  # every |difference| < 0.01
    ([62], [60], "one seed only"),
])
def test_direction_reading(a, b, reading):
    d = np.array(a, float) - np.array(b, float)
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    line = runs_of(a, b).direction("a", "b")
    assert line.split("the paper's direction: ")[1].startswith(reading)
    assert f"{d.mean():+.2f} ± {sd:.2f}" in line and f"above in {(d > 0).sum()})" in line


def test_table_rows_and_step_zero(tmp_path):
    runs = over_seeds(fake_runner(tmp_path), ["a", "b"], [0, 1, 2], live="all", record="none", record_dir=tmp_path)
    lines = runs.table({"a": "82.5"}).splitlines()
    assert len(lines) == 4  # all live: no footnote
    assert lines[1].split()[:6] == ["step", "0", "(before", "training)", "50.00", "51.00"]
    row_a = lines[2].split()
    assert row_a[:4] == ["a", "61.00", "63.00", "62.00"]
    assert row_a[4] == f"{np.mean([61, 63, 62]):.2f}" and row_a[6] == f"{np.std([61, 63, 62], ddof=1):.2f}"
    assert row_a[-1] == "82.5" and lines[3].split()[-1] == "-"
    assert math.isclose(runs.mean_sd("b")[0], (60 + 60.5 + 62.5) / 3)


def test_table_step_zero_row_only_when_the_variants_start_alike(tmp_path):
    def run(variant, seed):  # variant "b" is scored another way from step 0 on
        res = fake_runner(tmp_path)(variant, seed)
        return res if variant == "a" else dataclasses.replace(res, initial_score=40.0 + seed)

    lines = over_seeds(run, ["a", "b"], [0, 1], live="all", record="none", record_dir=tmp_path).table().splitlines()
    assert "differs between the variants" in lines[1] and "50.00" not in lines[1] and "45.00" not in lines[1]
    assert lines[2].split()[:3] == ["a", "61.00", "63.00"]


def test_live_seeds_and_mean_sd():
    from cselab.ablation import live_seeds, mean_sd

    assert live_seeds("ci", 5, (0, 1, 2)) == (5,)  # ci: the chapter's seed; the others are recorded
    assert live_seeds("laptop", 0, (0, 1, 2)) == (0, 1, 2) and live_seeds("full", 7, (0, 1)) == (7, 0, 1)
    assert mean_sd([2.0]) == (2.0, 0.0)
    m, sd = mean_sd([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3) and sd == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
