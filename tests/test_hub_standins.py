"""The ``full`` (and ``laptop``) code paths, offline: every hub id the presets and profiles name is
served from a Hugging Face cache of tiny stand-ins (tests/hub_standins.py) with ``HF_HUB_OFFLINE=1``.

- every paper preset and every ``-laptop`` preset trains 2 steps through ``cselab train`` on its
  stand-ins (slow: one process, about 1-4 minutes on 2 shared cores);
- hub-id typos, a cached model without tokenizer files and a config whose ``model_type`` does not match
  the saved weights fail with a message that names the id.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_standins as H  # noqa: E402

REPO = H.REPO
LAPTOP_MODEL = "google/bert_uncased_L-4_H-256_A-4"


def run_jobs(hf_home: Path, jobs: list[dict], tmp: Path) -> dict[str, dict]:
    """Run cselab CLI jobs in one subprocess against ``hf_home``'s cache, offline."""
    (tmp / "jobs.json").write_text(json.dumps(jobs), "utf-8")
    env = H.offline_env(hf_home)
    env["HF_DATASETS_CACHE"] = str(tmp / "datasets")
    proc = subprocess.run([sys.executable, str(Path(H.__file__)), str(tmp / "jobs.json"), str(tmp / "results.json")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {r["name"]: r for r in json.loads((tmp / "results.json").read_text("utf-8"))}


def train_job(name: str, preset: str, out: Path, *extra: str) -> dict:
    sets = H.smoke_overrides(preset) + list(extra)
    return {"name": name, "argv": ["train", "--preset", preset, "--output", str(out / name)]
            + [a for s in sets for a in ("--set", s)]}


# ------------------------------------------------------------------ what is covered
def test_every_hub_id_of_the_presets_and_profiles_gets_a_standin():
    from cselab.configs import PRESETS
    from cselab.profiles import PROFILES

    ids = H.hub_ids()
    for name, config in PRESETS.items():
        if H.is_hub_id(config.model):
            assert f"preset:{name}" in ids[config.model]
        if config.method == "diffcse" and H.is_hub_id(config.generator):
            assert f"generator:{name}" in ids[config.generator]
    assert "profile:laptop" in ids[PROFILES["laptop"].model] and "profile:full" in ids[PROFILES["full"].model]
    assert {H.family(i) for i in ids} <= {"bert", "roberta", "distilbert"}
    assert H.family("roberta-base") == "roberta" and H.family("distilroberta-base") == "roberta"
    assert H.family("distilbert-base-uncased") == "distilbert" and H.family(LAPTOP_MODEL) == "bert"
    papers = H.paper_presets()
    assert len(papers) >= 14 and not any(p.endswith(("-ci", "-laptop", "-tiny")) for p in papers)
    for preset in papers + H.laptop_presets():  # every registry train_file has an offline stand-in
        H.smoke_overrides(preset)


def test_cache_layout_is_the_hubs(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    snapshots = H.build_hub_cache(tmp_path, {"roberta-base": "roberta", LAPTOP_MODEL: "bert"})
    repo = tmp_path / "hub" / "models--google--bert_uncased_L-4_H-256_A-4"
    assert (repo / "refs" / "main").read_text() == H.STANDIN_COMMIT
    assert snapshots[LAPTOP_MODEL] == repo / "snapshots" / H.STANDIN_COMMIT
    config = snapshots[LAPTOP_MODEL] / "config.json"
    assert config.is_symlink() and config.resolve().parent == (repo / "blobs").resolve()
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= {p.name for p in snapshots[LAPTOP_MODEL].iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer.json"} <= {p.name for p in snapshots["roberta-base"].iterdir()}
    found = try_to_load_from_cache("roberta-base", "config.json", cache_dir=tmp_path / "hub")
    assert found == str(snapshots["roberta-base"] / "config.json")
    assert json.loads(Path(found).read_text())["model_type"] == "roberta"


@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_standins_load_with_the_right_architectures_offline(tmp_path):
    """In a fresh process (HF_HOME is read at import): cselab's loaders get the hub's architectures."""
    H.build_hub_cache(tmp_path / "home")
    script = (
        "import json, torch\n"
        "from transformers import AutoModelForMaskedLM\n"
        "from cselab import SentenceEncoder\n"
        "from cselab.profiles import resolve_profile\n"
        "out = {}\n"
        f"for mid in {sorted(H.hub_ids())!r}:\n"
        "    enc = SentenceEncoder.from_pretrained(mid, pooling='cls_before_pooler')\n"
        "    mlm = AutoModelForMaskedLM.from_pretrained(mid)\n"
        "    out[mid] = [type(enc.model).__name__, type(mlm).__name__, enc.model.config.model_type,\n"
        "                getattr(enc.model, 'pooler', None) is not None, enc.encode(['a cook eats fruit .']).shape[1],\n"
        "                type(enc.tokenizer).__name__]\n"
        "out['laptop'] = resolve_profile('laptop').name\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=H.offline_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got.pop("laptop") == "laptop"  # cached: no fallback to 'ci'
    assert got["bert-base-uncased"][:4] == ["BertModel", "BertForMaskedLM", "bert", True]
    assert got[LAPTOP_MODEL][:4] == ["BertModel", "BertForMaskedLM", "bert", True]
    assert got["roberta-base"][:4] == ["RobertaModel", "RobertaForMaskedLM", "roberta", False]  # no pooler weights
    assert got["distilroberta-base"][:3] == ["RobertaModel", "RobertaForMaskedLM", "roberta"]
    assert got["distilbert-base-uncased"][:3] == ["DistilBertModel", "DistilBertForMaskedLM", "distilbert"]
    assert all(v[4] == H.TINY["hidden"] for v in got.values())


# ------------------------------------------------------------------ the full pass
@pytest.fixture(scope="module")
def full_pass(tmp_path_factory):
    """One CLI process over one stand-in cache: every paper preset and every laptop preset, 2 steps each."""
    tmp = tmp_path_factory.mktemp("full_pass")
    H.build_hub_cache(tmp / "home")
    jobs = [train_job(p, p, tmp / "runs") for p in H.paper_presets() + H.laptop_presets()]
    return run_jobs(tmp / "home", jobs, tmp)


@pytest.mark.slow
@pytest.mark.parametrize("preset", H.paper_presets())
def test_paper_preset_trains_two_steps_offline_on_standins(full_pass, preset):
    result = full_pass[preset]
    assert result["rc"] == 0 and result["error"] is None, result["error"] or result["stdout"]
    assert "2 steps" in result["stdout"] and "best model:" in result["stdout"], result["stdout"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", H.laptop_presets())
def test_laptop_preset_trains_two_steps_offline_on_standins(full_pass, preset):
    """The laptop profile's presets: the small hub BERT (a stand-in here) on each preset's registry data."""
    assert len(H.laptop_presets()) >= 6
    result = full_pass[preset]
    assert result["rc"] == 0 and result["error"] is None, result["error"] or result["stdout"]
    assert "2 steps" in result["stdout"] and "best model:" in result["stdout"], result["stdout"]


# ------------------------------------------------------------------ clear failures
@pytest.fixture(scope="module")
def broken_cache(tmp_path_factory):
    """A cache with the laptop BERT and distilroberta intact, and three broken stand-ins:
    roberta-base without tokenizer files, bert-base-uncased whose config claims model_type 'roberta',
    distilbert-base-uncased (DiffCSE's generator) whose config claims model_type 'bert'."""
    tmp = tmp_path_factory.mktemp("broken")
    home = tmp / "home"
    H.build_hub_cache(home, {LAPTOP_MODEL: "bert", "distilroberta-base": "roberta"})
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        H.add_to_cache(home, "roberta-base", H.write_standin(staging / "r", "roberta", tokenizer=False))
        bert = H.write_standin(staging / "b", "bert")
        H.set_model_type(bert, "roberta")
        H.add_to_cache(home, "bert-base-uncased", bert)
        distil = H.write_standin(staging / "d", "distilbert")
        H.set_model_type(distil, "bert")
        H.add_to_cache(home, "distilbert-base-uncased", distil)
    out = tmp / "runs"
    jobs = [
        train_job("typo-model", "unsup-simcse-bert-base", out, "model=bert-base-uncasd"),
        train_job("typo-generator", "diffcse-bert-base", out, f"model={LAPTOP_MODEL}",
                  "generator=distilbert-base-uncasd"),
        train_job("no-tokenizer", "unsup-simcse-roberta-base", out),
        train_job("no-tokenizer-declutr", "declutr-base", out),
        train_job("wrong-type-encoder", "sup-simcse-bert-base", out),
        train_job("wrong-type-generator", "diffcse-bert-base", out, f"model={LAPTOP_MODEL}"),
        {"name": "eval-typo", "argv": ["eval", "robertabase", "--tasks", "STSBenchmark", "--device", "cpu"]},
    ]
    return run_jobs(home, jobs, tmp)


@pytest.mark.parametrize("job, names, says", [
    ("typo-model", "'bert-base-uncasd'", "not in the Hugging Face cache"),
    ("typo-generator", "'distilbert-base-uncasd'", "not in the Hugging Face cache"),
    ("eval-typo", "'robertabase'", "not in the Hugging Face cache"),
    ("no-tokenizer", "'roberta-base'", "no tokenizer files"),
    ("no-tokenizer-declutr", "'roberta-base'", "no tokenizer files"),
    ("wrong-type-encoder", "'bert-base-uncased'", "model_type='roberta'"),
    ("wrong-type-generator", "distilbert-base-uncased", "model_type='bert'"),
])
@pytest.mark.slow  # in `make test`; out of `make test-fast` (seconds of evaluation, training or subprocesses)
def test_broken_hub_models_fail_naming_the_id(broken_cache, job, names, says):
    result = broken_cache[job]
    assert result["rc"] != 0 and result["error"], f"{job} did not fail: {result['stdout'][-2000:]}"
    assert names in result["error"] and says in result["error"], result["error"]
    assert "Traceback" not in result["error"]


def test_check_loaded_weights_allows_only_the_optional_modules():
    from torch import nn

    from cselab.encoders import check_loaded_weights

    model = nn.Linear(2, 2)
    check_loaded_weights("x", model, {"missing_keys": ["pooler.dense.weight"]})  # pooler: dropped later, allowed
    check_loaded_weights("x", model, {"missing_keys": []}, optional=())
    with pytest.raises(ValueError, match=r"'org/model'.*encoder\.layer\.0\.weight"):
        check_loaded_weights("org/model", model, {"missing_keys": ["encoder.layer.0.weight"]})
    with pytest.raises(ValueError, match="pooler"):
        check_loaded_weights("gen", model, {"missing_keys": ["pooler.dense.weight"]}, optional=())
