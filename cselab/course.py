"""The course's notebooks as a whole: run them, make student/instructor copies, make slides.

``python -m cselab.course run OUT`` (``make course``) executes every chapter with papermill into
``OUT``. ``student OUT`` (``make student``) writes copies whose exercise solutions (the lines between
``### BEGIN SOLUTION`` and ``### END SOLUTION``) become ``raise NotImplementedError("Exercise N.M")``,
the number taken from the exercise's ``### Exercise N.M`` heading; ``solutions OUT`` (``make
solutions``) writes instructor copies with the solutions kept and the marker lines removed. Both
copies are written without outputs. ``slides OUT`` (``make slides``) writes one reveal.js deck per
chapter; ``mark-slides`` sets the slide types those decks follow in the committed notebooks. The
same commands are ``cselab course ...``. Only ``mark-slides`` writes to ``notebooks/``.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
EXERCISE_HEADING = re.compile(r"^###\s+(Exercise\s+\d+\.\d+)\b", re.M)


def chapters(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The chapter notebooks ``NN_slug.ipynb``, in teaching order."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def read_notebook(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def write_notebook(nb, path: Path) -> Path:
    """Write with nbformat's writer (the committed notebooks' format: indent 1, sorted keys, newline at the end)."""
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


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


# ------------------------------------------------------------------ exercises: student and solutions copies
def stub_line(label: str | None = None) -> str:
    """The line a solution region becomes: ``raise NotImplementedError("Exercise 3.2")  # your solution here``."""
    return f'raise NotImplementedError("{label}")  # your solution here' if label else \
        "raise NotImplementedError  # your solution here"


def _rewrite_regions(source: str, where: str, stub: str | None) -> str:
    """Replace each solution region by ``stub`` (indented like its ``### BEGIN SOLUTION`` line), or, with
    ``stub=None``, keep the solution and drop only the marker lines. ValueError names ``where`` and the line
    on unbalanced markers."""
    out, inside = [], False
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN!r} inside an open solution region.")
            inside = True
            if stub is not None:
                out.append(re.match(r"\s*", line).group(0) + stub + "\n")
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END!r} without {BEGIN!r}.")
            inside = False
        elif not inside or stub is None:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN!r} is never closed by {END!r}.")
    text = "".join(out)
    return text if source.endswith("\n") else text.removesuffix("\n")  # notebook cells end without one


def stub_solutions(source: str, where: str = "cell", label: str | None = None) -> str:
    """The student version of a code cell: every solution region becomes ``stub_line(label)``."""
    return _rewrite_regions(source, where, stub_line(label))


def strip_markers(source: str, where: str = "cell") -> str:
    """The instructor version of a code cell: the solutions stay, the marker lines go."""
    return _rewrite_regions(source, where, None)


def _text(cell) -> str:
    source = cell["source"]  # a string once read by nbformat, a list of lines in raw JSON
    return "".join(source) if isinstance(source, list) else source


def parameters_cell(nb):
    """The cell tagged ``parameters`` (papermill injects its overrides after it)."""
    return next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))


def has_solution(cell) -> bool:
    return cell["cell_type"] == "code" and any(line.strip() == BEGIN for line in _text(cell).splitlines())


def exercise_labels(nb, name: str = "notebook") -> dict[int, str]:
    """``{cell index: "Exercise N.M"}`` for every code cell with a solution region.

    The label is the last ``### Exercise N.M`` heading in the markdown cells between the previous
    solution cell and this one, so every exercise needs its own heading; ValueError (naming the
    notebook and the cell) when there is none.
    """
    labels, heading = {}, None
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            found = EXERCISE_HEADING.findall(_text(cell))
            heading = re.sub(r"\s+", " ", found[-1]) if found else heading
        elif has_solution(cell):
            if heading is None:
                raise ValueError(f"{name} cell {i}: a solution region without its own '### Exercise N.M' heading "
                                 "in a markdown cell above it (after the previous exercise).")
            labels[i], heading = heading, None
    return labels


def _copy(path: Path, out_dir: Path, rewrite) -> Path:
    nb = read_notebook(path)
    labels = exercise_labels(nb, path.name)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = rewrite(cell.source, f"{path.name} cell {i}", labels.get(i))
            cell.outputs, cell.execution_count = [], None
    return write_notebook(nb, out_dir / path.name)


def student_copy(path: Path, out_dir: Path) -> Path:
    """Write ``out_dir/<name>``: solutions stubbed with the exercise's number, outputs cleared."""
    return _copy(Path(path), Path(out_dir), stub_solutions)


def solutions_copy(path: Path, out_dir: Path) -> Path:
    """Write ``out_dir/<name>``: solutions kept without the marker lines, outputs cleared."""
    return _copy(Path(path), Path(out_dir), lambda source, where, label: strip_markers(source, where))


# ------------------------------------------------------------------ slides
SLIDE_TYPES = ("slide", "subslide", "fragment", "skip", "notes", "-")


def _imports_only(source: str) -> bool:
    try:
        body = ast.parse(source).body
    except SyntaxError:  # IPython magics
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def slide_type(cells, i: int) -> str:
    """The slide type of ``cells[i]`` by the course's rules.

    ``#``/``##`` heading: a new slide; ``###`` and deeper: a subslide (below it). Other markdown after a
    code cell starts a subslide too (the commentary on a result), after markdown it continues the slide.
    The Colab set-up cell, imports-only cells and exercise solutions (no answers on the projector) are
    skipped; every other code cell appears as a fragment of its slide.
    """
    cell = cells[i]
    text = _text(cell).lstrip()
    if cell["cell_type"] == "markdown":
        level = len(text) - len(text.lstrip("#")) if re.match(r"#+\s", text) else 0
        if level in (1, 2):
            return "slide"
        if level >= 3 or (i > 0 and cells[i - 1]["cell_type"] == "code"):
            return "subslide"
        return "-"
    if cell["cell_type"] != "code":
        return "-"
    if "google.colab" in text or _imports_only(text) or has_solution(cell):
        return "skip"
    return "fragment"


def mark_slides(path: Path, overwrite: bool = False) -> int:
    """Write ``metadata.slideshow.slide_type`` into every cell of the notebook at ``path`` that has none
    (every cell with ``overwrite``), by ``slide_type``'s rules; returns the number of cells changed.

    Idempotent; nothing but that metadata changes (nbformat's writer, no outputs touched), and the
    file is not rewritten when no cell changes.
    """
    nb = read_notebook(path)
    changed = 0
    for i, cell in enumerate(nb.cells):
        current = cell.metadata.get("slideshow", {}).get("slide_type")
        if current is not None and current not in SLIDE_TYPES:
            raise ValueError(f"{Path(path).name} cell {i}: unknown slide_type {current!r}; one of {SLIDE_TYPES}.")
        wanted = slide_type(nb.cells, i)
        if current != wanted and (current is None or overwrite):
            cell.metadata.setdefault("slideshow", {})["slide_type"] = wanted
            changed += 1
    if changed:
        write_notebook(nb, Path(path))
    return changed


def chapter_title(nb, name: str = "notebook") -> str:
    """The text of the notebook's first ``# `` heading (ValueError naming ``name`` when there is none)."""
    for cell in nb["cells"]:
        found = re.search(r"^#\s+(.+?)\s*$", _text(cell), re.M) if cell["cell_type"] == "markdown" else None
        if found:
            return found.group(1)
    raise ValueError(f"{name}: no '# ' title heading in any markdown cell")


def build_slides(out_dir: Path, notebooks: list[Path] | None = None, reveal_prefix: str | None = None,
                 require_js_url: str | None = None) -> list[Path]:
    """Write ``out_dir/NN_slug.slides.html``, one reveal.js deck per chapter; returns their paths.

    The same exporter as ``jupyter nbconvert --to slides --SlidesExporter.reveal_scroll=True``, with the
    chapter title as the page title. The HTML is complete, but when opened it loads require.js, reveal.js 4
    and MathJax from CDNs. To present offline, put copies next to the decks and pass ``reveal_prefix``
    (``--SlidesExporter.reveal_url_prefix``, e.g. ``reveal.js`` for ``build/slides/reveal.js/dist/...``) and
    ``require_js_url`` (e.g. ``require.min.js``); without MathJax the formulas show as TeX source.
    """
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(reveal_scroll=True)  # long code cells scroll instead of overflowing
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    if require_js_url:
        exporter.require_js_url = require_js_url
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks or chapters():
        nb = read_notebook(path)
        html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": chapter_title(nb, Path(path).name)}})
        written.append(out_dir / f"{Path(path).stem}.slides.html")
        written[-1].write_text(html, "utf-8")
    return written


# ------------------------------------------------------------------ command line
def add_commands(sub) -> None:
    """The course subcommands, shared by ``python -m cselab.course`` and ``cselab course``."""
    run = sub.add_parser("run", help="execute every chapter notebook into OUT_DIR")
    run.add_argument("out_dir", type=Path, help="where the executed notebooks go (e.g. build/notebooks)")
    run.add_argument("--profile", choices=["ci", "laptop", "full"], default=None,
                     help="profile for every notebook (default: $CSELAB_PROFILE, else full on CUDA, else laptop)")
    run.add_argument("--only", nargs="*", default=None, help="chapter numbers or names to run (default: all)")
    run.add_argument("--record-ablations", action="store_true",
                     help="run only the chapters with a RECORD_ABLATION parameter, every ablation seed live in fresh "
                          "run folders under OUT_DIR/runs, and rewrite their data/ablations/ recordings")
    for name, what in [("student", "student copies (solutions replaced by raise NotImplementedError)"),
                       ("solutions", "instructor copies (solutions kept, markers removed)")]:
        copies = sub.add_parser(name, help=f"write {what} into OUT_DIR, without outputs")
        copies.add_argument("out_dir", type=Path, help=f"where the copies go (e.g. build/{name})")
    slides = sub.add_parser("slides", help="write one reveal.js HTML deck per chapter into OUT_DIR")
    slides.add_argument("out_dir", type=Path, help="where the decks go (e.g. build/slides)")
    slides.add_argument("--reveal-prefix", default=None, metavar="URL",
                        help="where the decks load reveal.js 4 from (default: a CDN), e.g. a local copy: reveal.js")
    slides.add_argument("--require-js-url", default=None, metavar="URL",
                        help="where the decks load require.js from (default: a CDN), e.g. require.min.js")
    mark = sub.add_parser("mark-slides", help="set missing slide types in the committed notebooks (idempotent)")
    mark.add_argument("notebooks", nargs="*", type=Path, help="notebooks to mark (default: every chapter)")
    mark.add_argument("--overwrite", action="store_true", help="also reset slide types set by hand to the rules'")


def run_command(parser: argparse.ArgumentParser, args) -> int:
    if args.course_command in ("student", "solutions"):
        make = student_copy if args.course_command == "student" else solutions_copy
        for path in chapters():
            print(f"wrote {make(path, args.out_dir)}")
        return 0
    if args.course_command == "slides":
        for path in build_slides(args.out_dir, reveal_prefix=args.reveal_prefix,
                                 require_js_url=args.require_js_url):
            print(f"wrote {path}")
        return 0
    if args.course_command == "mark-slides":
        for path in args.notebooks or chapters():
            print(f"{path}: {mark_slides(path, overwrite=args.overwrite)} cells marked")
        return 0
    selected = chapters()
    if args.only:
        selected = [p for p in selected if any(p.name.startswith(k) or p.stem == k for k in args.only)]
        if not selected:
            parser.error(f"no chapter matches {args.only}; chapters: {[p.stem for p in chapters()]}")
    parameters = {}
    if args.record_ablations:
        if not os.environ.get("CSELAB_DATA_DIR"):
            parser.error("--record-ablations records what the chapters read in CI: set CSELAB_DATA_DIR to the data root")
        selected = [p for p in selected if "RECORD_ABLATION" in _text(parameters_cell(read_notebook(p)))]
    for path in selected:
        start = time.perf_counter()
        print(f"Executing {path.name} ...", flush=True)
        if args.record_ablations:  # fresh run folders: a recording never reuses an older run
            runs = args.out_dir / "runs" / path.stem
            shutil.rmtree(runs, ignore_errors=True)
            parameters = {"RECORD_ABLATION": True, "RUN_DIR": str(runs.resolve())}
        target = run_notebook(path, args.out_dir, args.profile, **parameters)
        print(f"  wrote {target} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"Executed notebooks are in {args.out_dir.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cselab.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(parser.add_subparsers(dest="course_command", required=True))
    return run_command(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
