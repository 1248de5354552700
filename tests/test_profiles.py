"""Run profiles: default choice, offline fallback, overrides, and the hub probe."""
from __future__ import annotations

import dataclasses
import socket
import time

import pytest

import cselab
import cselab.profiles as profiles
from cselab import PROFILES, Profile, default_profile, resolve_profile
from cselab.profiles import hub_reachable, model_is_cached


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        pytest.fail(f"unexpected network access: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(profiles.socket, "create_connection", refuse)


# ----------------------------------------------------------------------------- default_profile
def test_default_profile_reads_env(monkeypatch):
    monkeypatch.setattr(profiles, "_cuda_available", lambda: True)
    for value in ("ci", "laptop", "full", " ci \n"):
        monkeypatch.setenv("CSELAB_PROFILE", value)
        assert default_profile() == value.strip()


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "laptop")])
def test_default_profile_without_env(monkeypatch, cuda, expected):
    monkeypatch.delenv("CSELAB_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "_cuda_available", lambda: cuda)
    assert default_profile() == expected


def test_empty_env_counts_as_unset(monkeypatch):
    monkeypatch.setenv("CSELAB_PROFILE", "  ")
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    assert default_profile() == "laptop"


def test_resolve_profile_default_uses_env(monkeypatch, no_network, capsys):
    monkeypatch.setenv("CSELAB_PROFILE", "ci")
    assert resolve_profile() is PROFILES["ci"]
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- resolve_profile
def test_ci_is_offline(no_network, capsys, monkeypatch):
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    profile = resolve_profile("ci")
    assert profile == PROFILES["ci"]
    assert profile.name == "ci" and profile.model == "cselab/tiny" and profile.device == "cpu"
    assert profile.needs_hub is False
    assert capsys.readouterr().out == ""


def test_profiles_table():
    assert sorted(PROFILES) == ["ci", "full", "laptop"]
    for name, profile in PROFILES.items():
        assert isinstance(profile, Profile) and profile.name == name
        assert profile.eval_batch_size > 0 and profile.toy_steps > 0 and profile.anisotropy_sentences > 0
        assert profile.device in {"cpu", "cuda"}
        assert profile.needs_hub is (not profile.model.startswith("cselab/"))
    assert PROFILES["full"].device == "cuda"
    assert PROFILES["ci"].toy_steps <= PROFILES["laptop"].toy_steps <= PROFILES["full"].toy_steps


@pytest.mark.parametrize("name", ["CI", "gpu", "", "lap top"])
def test_unknown_profile_lists_valid_ones(name, monkeypatch):
    monkeypatch.setenv("CSELAB_PROFILE", "nonsense")  # "" falls back to the environment
    with pytest.raises(ValueError) as info:
        resolve_profile(name)
    message = str(info.value)
    for valid in ("ci", "laptop", "full"):
        assert repr(valid) in message


def test_laptop_falls_back_to_ci_when_offline_and_not_cached(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: False)
    profile = resolve_profile("laptop")
    assert profile == PROFILES["ci"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    assert "falling back" in lines[0] and PROFILES["laptop"].model in lines[0]


def test_laptop_kept_when_cached_or_reachable(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: True)
    assert resolve_profile("laptop") == PROFILES["laptop"]
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: False)
    assert resolve_profile("laptop") == PROFILES["laptop"]
    assert capsys.readouterr().out == ""


def test_check_hub_false_skips_the_probe(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: pytest.fail("probed the hub"))
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: False)
    assert resolve_profile("laptop", check_hub=False) == PROFILES["laptop"]
    assert capsys.readouterr().out == ""


def test_full_without_cuda_runs_on_cpu(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: True)
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: True)
    profile = resolve_profile("full")
    assert profile.name == "full" and profile.device == "cpu"
    assert profile.model == PROFILES["full"].model
    assert PROFILES["full"].device == "cuda"  # the table itself is untouched
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "CUDA" in lines[0] and "CPU" in lines[0]


def test_full_with_cuda_is_silent(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "_cuda_available", lambda: True)
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: True)
    assert resolve_profile("full") == PROFILES["full"]
    assert capsys.readouterr().out == ""


def test_overrides(monkeypatch, no_network):
    profile = resolve_profile("ci", eval_batch_size=64, toy_steps=3)
    assert profile.eval_batch_size == 64 and profile.toy_steps == 3
    assert profile.name == "ci" and profile.model == "cselab/tiny"
    assert PROFILES["ci"].eval_batch_size == 128  # not mutated
    assert PROFILES["ci"].with_overrides(device="cuda").device == "cuda"
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["ci"].toy_steps = 1  # type: ignore[misc]


def test_overrides_apply_after_fallback(monkeypatch, capsys):
    monkeypatch.setattr(profiles, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(profiles, "model_is_cached", lambda model: False)
    profile = resolve_profile("laptop", eval_batch_size=32)
    assert profile.name == "ci" and profile.eval_batch_size == 32
    capsys.readouterr()


def test_unknown_override_raises_type_error(no_network):
    with pytest.raises(TypeError, match="batch"):
        resolve_profile("ci", batch=64)
    with pytest.raises(TypeError):
        PROFILES["ci"].with_overrides(learning_rate=1e-3)


# ----------------------------------------------------------------------------- hub_reachable
@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_hub_reachable_honours_offline_env(monkeypatch, no_network, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_reachable() is False


def test_hub_reachable_closed_port_is_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    assert hub_reachable(timeout=1, url="http://127.0.0.1:9") is False
    assert time.perf_counter() - start < 3


def test_hub_reachable_uses_endpoint_and_default_ports(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen = []

    def fake(address, timeout):
        seen.append((address, timeout))
        raise OSError("refused")

    monkeypatch.setattr(profiles.socket, "create_connection", fake)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    assert hub_reachable(timeout=0.5) is False
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub_reachable() is False
    assert hub_reachable(url="http://localhost") is False
    assert seen == [(("mirror.example", 8080), 0.5), (("huggingface.co", 443), 3.0), (("localhost", 80), 3.0)]


def test_hub_reachable_open_port(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        port = server.getsockname()[1]
        assert hub_reachable(timeout=1, url=f"http://127.0.0.1:{port}") is True
    finally:
        server.close()


# ----------------------------------------------------------------------------- model_is_cached
def test_model_is_cached_local_dir_and_tiny(tmp_path, no_network):
    assert model_is_cached(str(tmp_path)) is True
    assert model_is_cached("cselab/tiny") is True


def test_model_is_cached_false_for_unknown_id(no_network):
    assert model_is_cached("cselab-tests/surely-not-in-any-cache") is False


def test_public_api():
    assert cselab.resolve_profile is resolve_profile and cselab.default_profile is default_profile


# ------------------------------------------------------------------ the test-only step cap
def test_step_cap_unset_is_none(monkeypatch):
    monkeypatch.delenv("CSELAB_MAX_STEPS", raising=False)
    assert profiles.step_cap() is None
    monkeypatch.setenv("CSELAB_MAX_STEPS", " ")
    assert profiles.step_cap() is None


def test_step_cap_reads_a_positive_integer(monkeypatch):
    monkeypatch.setenv("CSELAB_MAX_STEPS", " 7 ")
    assert profiles.step_cap() == 7


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_step_cap_rejects_what_is_not_a_positive_integer(monkeypatch, value):
    monkeypatch.setenv("CSELAB_MAX_STEPS", value)
    with pytest.raises(ValueError, match=r"\$CSELAB_MAX_STEPS=.*positive whole number.*or unset it"):
        profiles.step_cap()
