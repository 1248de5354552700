"""The ``cselab`` command: ``cselab train``, ``cselab eval MODEL`` and ``cselab download NAME``."""
from __future__ import annotations

import argparse
import json
import sys

from . import data as D
from .encoders import POOLERS


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
    ev.add_argument("model", help="hub id, local model directory, or cselab/tiny")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(parser, args)
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
    print(f"evaluation score ({config.eval_data}): initial {result.initial_score:.2f}, best {result.best_score:.2f} "
          f"at step {result.best_step}, final {result.final_score:.2f}; {result.steps} steps in {result.seconds:.0f} s")
    print(f"best model: {result.best_dir} (SentenceEncoder.from_pretrained or SentenceTransformer loads it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
