"""The ``cselab`` command: ``cselab train``, ``cselab eval MODEL``, ``cselab download NAME``, ``cselab generate``
and ``cselab course run|student|solutions|slides|mark-slides`` (the same as ``python -m cselab.course``)."""
from __future__ import annotations

import argparse
import json
import sys

from . import course
from . import data as D
from .encoders import POOLERS, TRUNCATED_DECODER_KEY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cselab", description="Contrastive sentence-embedding course tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    from .configs import PRESETS

    tr = sub.add_parser("train", help="train with a preset (see --preset); prints STS-B dev before/after",
                        description="Train a contrastive method with one of the papers' presets. "
                                    "Every key of the configuration can be overridden with --set key=value; "
                                    "bad keys and values fail before any work starts.")
    tr.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="NAME",
                    help="one of: " + ", ".join(sorted(PRESETS)))
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a configuration key (repeatable), e.g. --set batch_size=32 --set max_steps=100")
    tr.add_argument("--output", default=None, help="run directory (default: build/runs/<preset>)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    tr.add_argument("--data-dir", default=None, help=f"data root (default: ${D.DATA_ENV}, else the cache)")
    tr.add_argument("--dry-run", action="store_true", help="print the resolved configuration as JSON and exit")

    ev = sub.add_parser("eval", help="evaluate an encoder on the STS tasks (SimCSE protocol)")
    ev.add_argument("model", help="hub id, local model directory, cselab/tiny or cselab/smollm2-2l")
    ev.add_argument("--pooling", choices=POOLERS, default=None, help="pooler (default: cls, or the model's ST config)")
    ev.add_argument("--tasks", nargs="+", choices=D.STS_TASKS, default=None, help="tasks (default: all seven)")
    ev.add_argument("--split", choices=["train", "dev", "test"], default="test", help="STS-B/SICK-R split")
    ev.add_argument("--data-dir", default=None, help=f"data root (default: ${D.DATA_ENV}, else the cache)")
    ev.add_argument("--batch-size", type=int, default=128)
    ev.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ev.add_argument("--json", action="store_true", help="also print the scores as JSON")

    dl = sub.add_parser("download", help="download a data set into a data root")
    dl.add_argument("name", choices=sorted(D.REGISTRY), help="; ".join(f"{k}: {v.description}" for k, v in D.REGISTRY.items()))
    dl.add_argument("--dest", default=None, help=f"data root (default: ${D.DATA_ENV}, else the cache)")
    dl.add_argument("--force", action="store_true", help="download again even if present")

    from .llm_backends import API_KEY_ENV, BASE_URL_ENV, MODEL_ENV

    ge = sub.add_parser("generate", help="write NGCSE-style training data with an LLM (resumable)",
                        description="Ask an LLM for an entailed/contradicting sentence (--pattern nli) or a "
                                    "paraphrase/intermediate/dissimilar sentence (--pattern sts) for every source "
                                    "sentence (NGCSE, Li et al., AAAI-24). Accepted records are appended to --out, "
                                    "rejected answers to OUT.rejected.jsonl; re-running the same command resumes.")
    ge.add_argument("--backend", required=True, choices=["openai", "transformers", "replay"],
                    help="openai: an OpenAI-compatible HTTP endpoint; transformers: a local causal LM; "
                         "replay: answers recorded in --responses")
    ge.add_argument("--model", default=None, help=f"model name (openai; default ${MODEL_ENV}); path, .gguf file, hub id "
                                                  f"or smollm2-135m-instruct (transformers)")
    ge.add_argument("--responses", default=None, metavar="FILE",
                    help="replay: recorded answers (JSON lines with a header; see cselab.llm_backends.ReplayChatBackend)")
    ge.add_argument("--base-url", default=None, help=f"endpoint root, e.g. http://127.0.0.1:8000/v1 (default ${BASE_URL_ENV})")
    ge.add_argument("--api-key-env", default=API_KEY_ENV, metavar="NAME",
                    help=f"environment variable holding the API key (default {API_KEY_ENV}); keys are never read from arguments")
    ge.add_argument("--source", required=True, help="text file, one source sentence per line (id = line number)")
    ge.add_argument("--out", required=True, help="output .jsonl (accepted records); created or resumed")
    ge.add_argument("--pattern", choices=["nli", "sts"], default="sts", help="prompt pattern (default sts)")
    ge.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N source sentences")
    ge.add_argument("--concurrency", type=int, default=1, metavar="K", help="requests in flight at once (default 1)")
    ge.add_argument("--temperature", type=float, default=1.0)
    ge.add_argument("--top-p", type=float, default=1.0)
    ge.add_argument("--max-tokens", type=int, default=256)
    ge.add_argument("--seed", type=int, default=None)
    ge.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (openai)")
    ge.add_argument("--max-retries", type=int, default=4, help="retries on 429/5xx/connection errors (openai)")
    ge.add_argument("--chat-template", default=None, metavar="FILE",
                    help="Jinja chat template for a transformers model whose tokenizer has none")
    ge.add_argument("--device", default=None, help="cpu or cuda (transformers; default: cuda when available)")

    co = sub.add_parser("course", help="the notebooks: run them, student/solutions copies, slides",
                        description=course.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    course.add_commands(co.add_subparsers(dest="course_command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(parser, args)
    if args.command == "generate":
        return _generate(parser, args)
    if args.command == "course":
        return course.run_command(parser, args)
    if args.command == "download":
        path = D.download(args.name, args.dest, force=args.force)
        print(f"{args.name}: {path}")
        return 0
    import torch

    from .encoders import SentenceEncoder
    from .evaluate import evaluate_sts

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = SentenceEncoder.from_pretrained(args.model, pooling=args.pooling, device=device)
    scores = evaluate_sts(encoder, args.data_dir, args.tasks, args.split, args.batch_size)
    if args.json:
        print(json.dumps(scores, indent=2))
    return 0


def _train(parser: argparse.ArgumentParser, args) -> int:
    from pathlib import Path

    from .configs import resolve_config

    try:
        config = resolve_config(args.preset, args.overrides)
    except ValueError as exc:
        parser.error(str(exc))
    if args.dry_run:
        print(config.to_json())
        return 0
    from .train import train

    output = Path(args.output or Path("build") / "runs" / args.preset)
    result = train(config, output, resume=args.resume, data_dir=args.data_dir)
    print(f"evaluation score ({config.eval_data_name}): initial {result.initial_score:.2f}, "
          f"best {result.best_score:.2f} at step {result.best_step}, final {result.final_score:.2f}; "
          f"{result.steps} steps in {result.seconds:.0f} s")
    saved = json.loads((Path(result.best_dir) / "config.json").read_text("utf-8"))
    if TRUNCATED_DECODER_KEY in saved:  # e.g. cselab/smollm2-2l: plain loaders would apply the skipped final norm
        print(f"best model: {result.best_dir} (SentenceEncoder.from_pretrained loads it; other loaders must apply "
              f"its config's {TRUNCATED_DECODER_KEY!r} entry, e.g. skip the final norm)")
    else:
        print(f"best model: {result.best_dir} (SentenceEncoder.from_pretrained or SentenceTransformer loads it)")
    return 0


def _generate(parser: argparse.ArgumentParser, args) -> int:
    from pathlib import Path

    from .llm_backends import LLMBackendError, OpenAIChatBackend, ReplayChatBackend, TransformersChatBackend
    from .llm_data import generate

    if args.concurrency < 1 or (args.limit is not None and args.limit < 0):
        parser.error("--concurrency must be >= 1 and --limit >= 0.")
    try:
        if args.backend == "openai":
            backend = OpenAIChatBackend(args.model, args.base_url, api_key_env=args.api_key_env,
                                        timeout=args.timeout, max_retries=args.max_retries)
        elif args.backend == "replay":
            if not args.responses:
                parser.error("--backend replay needs --responses FILE (recorded answers, see cselab.llm_backends).")
            backend = ReplayChatBackend(args.responses)
        else:
            if not args.model:
                parser.error("--backend transformers needs --model (a local path, a .gguf file, a hub id, or "
                             "smollm2-135m-instruct).")
            template = Path(args.chat_template).read_text(encoding="utf-8") if args.chat_template else None
            backend = TransformersChatBackend(args.model, device=args.device, chat_template=template)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    try:
        result = generate(backend, args.source, args.out, pattern=args.pattern, concurrency=args.concurrency,
                          limit=args.limit, temperature=args.temperature, top_p=args.top_p,
                          max_tokens=args.max_tokens, seed=args.seed)
    except LLMBackendError as exc:
        print(f"error: {exc}\nThe answers received so far are saved; re-run the same command to resume.",
              file=sys.stderr)
        return 1
    if result.requests == 0:
        print(f"{args.out}: nothing to do ({result.skipped} sources already done).")
    else:
        print(f"{args.out}: {result.requests} requests, {result.stats}; {result.skipped} sources were already done.")
    print(f"accepted records: {result.out_path}; rejected answers: {result.rejected_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
