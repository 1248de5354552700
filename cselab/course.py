"""Execute the chapter notebooks (``make course``) and write student copies (``make student``).

``python -m cselab.course run OUT`` executes every chapter with papermill into ``OUT``
(``build/notebooks/`` from the Makefile). ``python -m cselab.course student OUT`` writes copies
whose exercise solutions (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) are replaced by
``raise NotImplementedError``, without outputs (``build/student/``). The committed notebooks in
``notebooks/`` are never written to.
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
    data_dir = os.environ.get("CSELAB_DATA_DIR")
    if data_dir and not Path(data_dir).is_absolute():
        # the kernel runs in notebooks/, where a path relative to the caller's directory is wrong
        os.environ["CSELAB_DATA_DIR"] = str(Path(data_dir).resolve())
    if profile is not None:
        parameters["PROFILE"] = profile
    target = out_dir / path.name
    papermill.execute_notebook(str(path), str(target), parameters=parameters, kernel_name="python3",
                               cwd=str(path.parent), progress_bar=False)
    return target


BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError  # your solution here"


def stub_solutions(source: str, where: str = "cell") -> str:
    """Replace every solution region of a code cell by ``raise NotImplementedError``.

    The stub takes the indentation of the ``### BEGIN SOLUTION`` line, so a function body
    stays valid Python. Raises ValueError (naming ``where``) on unbalanced markers.
    """
    out, inside = [], False
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN!r} inside an open solution region.")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.append(f"{indent}{STUB}\n")
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END!r} without {BEGIN!r}.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN!r} is never closed by {END!r}.")
    return "".join(out)


def student_copy(path: Path, out_dir: Path) -> Path:
    """Write ``out_dir/<name>``: solutions stubbed, outputs and execution counts cleared."""
    nb = json.loads(Path(path).read_text("utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = stub_solutions(source, f"{Path(path).name} cell {i}")
        cell["outputs"], cell["execution_count"] = [], None
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / Path(path).name
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cselab.course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every chapter notebook into OUT_DIR")
    run.add_argument("out_dir", type=Path, help="where the executed notebooks go (e.g. build/notebooks)")
    run.add_argument("--profile", choices=["ci", "laptop", "full"], default=None,
                     help="profile for every notebook (default: $CSELAB_PROFILE, else full on CUDA, else laptop)")
    run.add_argument("--only", nargs="*", default=None, help="chapter numbers or names to run (default: all)")
    student = sub.add_parser("student", help="write student copies (solutions stubbed) into OUT_DIR")
    student.add_argument("out_dir", type=Path, help="where the student copies go (e.g. build/student)")
    args = parser.parse_args(argv)
    if args.command == "student":
        for path in chapters():
            print(f"wrote {student_copy(path, args.out_dir)}")
        return 0
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
