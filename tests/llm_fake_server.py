"""A small OpenAI-compatible chat server on 127.0.0.1 for the LLM tests (real HTTP, in a thread).

By default it answers like a well-behaved model: it reads the last ``Sentence: ...`` line of the
prompt and returns the JSON object the prompt asks for (NLI or STS keys). A sentence containing
``COPY`` gets the sentence itself back as the first field, which the filter must reject.
``script`` queues canned replies ``(status, headers, body)`` that are served first, one per request.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def good_answer(prompt: str) -> str:
    """The answer a cooperative model would give to one of cselab's prompts (fixed, simple rules)."""
    sentence = [line for line in prompt.splitlines() if line.startswith("Sentence: ")][-1][len("Sentence: "):]
    words = sentence.rstrip(".").split()
    if '"paraphrase"' in prompt:
        answer = {"paraphrase": f"In other words, {sentence}", "intermediate": " ".join(words[: max(2, len(words) - 2)]) + ".",
                  "dissimilar": "Nothing of the sort ever happened here."}
    else:
        answer = {"entailment": f"It is true that {sentence}", "contradiction": f"It is false that {sentence}"}
    if "COPY" in sentence:
        answer[next(iter(answer))] = sentence
    return json.dumps(answer)


class FakeLLMServer:
    """Counts requests, records their headers and bodies, and tracks the most in flight at once."""

    def __init__(self, delay: float = 0.0, script: list[tuple[int, dict[str, str], bytes]] | None = None) -> None:
        self.delay = delay
        self.script = list(script or [])
        self.requests: list[tuple[dict[str, str], dict]] = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append((dict(self.headers), body))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    canned = server.script.pop(0) if server.script else None
                try:
                    time.sleep(server.delay)
                    if self.path != "/v1/chat/completions":
                        canned = (404, {}, b'{"error": "not found"}')
                    if canned is None:
                        content = good_answer(body["messages"][-1]["content"])
                        canned = (200, {}, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())
                    status, headers, payload = canned
                    self.send_response(status)
                    for key, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out or was killed
                    pass
                finally:
                    with server._lock:
                        server.active -= 1

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
