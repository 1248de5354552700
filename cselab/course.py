"""Execute the chapter notebooks with papermill (``make course``; ``python -m cselab.course run OUT``).

Executed copies go to ``OUT`` (``build/notebooks/`` from the Makefile); the committed
notebooks in ``notebooks/`` are never written to.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def chapters(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The chapter notebooks ``NN_slug.ipynb``, in teaching order."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, out_dir: Path, profile: str | None = None, **parameters) -> Path:
    """Execute one notebook with papermill into ``out_dir``; returns the executed copy's path.

    ``profile`` (if given) is injected as the ``PROFILE`` parameter; otherwise the notebook's
    own default applies (``$CSELAB_PROFILE``, else ``full`` on CUDA, else ``laptop``).
    """
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    if profile is not None:
        parameters["PROFILE"] = profile
    target = out_dir / path.name
    papermill.execute_notebook(str(path), str(target), parameters=parameters, kernel_name="python3",
                               cwd=str(path.parent), progress_bar=False)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cselab.course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every chapter notebook into OUT_DIR")
    run.add_argument("out_dir", type=Path, help="where the executed notebooks go (e.g. build/notebooks)")
    run.add_argument("--profile", choices=["ci", "laptop", "full"], default=None,
                     help="profile for every notebook (default: $CSELAB_PROFILE, else full on CUDA, else laptop)")
    run.add_argument("--only", nargs="*", default=None, help="chapter numbers or names to run (default: all)")
    args = parser.parse_args(argv)
    selected = chapters()
    if args.only:
        selected = [p for p in selected if any(p.name.startswith(k) or p.stem == k for k in args.only)]
        if not selected:
            parser.error(f"no chapter matches {args.only}; chapters: {[p.stem for p in chapters()]}")
    for path in selected:
        start = time.perf_counter()
        print(f"Executing {path.name} ...", flush=True)
        target = run_notebook(path, args.out_dir, args.profile)
        print(f"  wrote {target} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"Executed notebooks are in {args.out_dir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
