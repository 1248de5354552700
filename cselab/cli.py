"""The ``cselab`` command: ``cselab eval MODEL`` and ``cselab download NAME``."""
from __future__ import annotations

import argparse
import json
import sys

from . import data as D
from .encoders import POOLERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cselab", description="Contrastive sentence-embedding course tools.")
    sub = parser.add_subparsers(dest="command", required=True)

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
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
