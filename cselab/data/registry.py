"""Downloads: the registry of remote datasets, checksums, unpacking, and real training text by kind."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .core import COURSE_DATA_DIR, DataNotFoundError, data_root


# ------------------------------------------------------------------ downloads
SIMCSE_DATA_URL = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/"
NGCSE_DATA_URL = "https://huggingface.co/datasets/H34lthy/NGCSE_hybrid_dataset/resolve/main/"


@dataclass(frozen=True)
class RemoteDataset:
    """A downloadable data set. ``target`` is relative to the data root."""

    name: str
    url: str
    target: str
    archive: bool
    sha256: str | None
    description: str
    preprocess: str | None = None  # a key of PREPROCESSORS: turns the downloaded file into the target


# The hub serves these through Git LFS and states each file's SHA-256 in its X-Linked-Etag
# header; a download is checked against `sha256` when set, else against that header.
REGISTRY: dict[str, RemoteDataset] = {
    "senteval": RemoteDataset("senteval", SIMCSE_DATA_URL + "senteval.tar", "senteval/downstream", True, None,
                              "SentEval STS12-16, STS-B, SICK and transfer tasks (SimCSE's copy)"),
    "wiki1m": RemoteDataset("wiki1m", SIMCSE_DATA_URL + "wiki1m_for_simcse.txt", "unsup/wiki1m_for_simcse.txt",
                            False, None, "10^6 English Wikipedia sentences (unsupervised SimCSE)"),
    "nli": RemoteDataset("nli", SIMCSE_DATA_URL + "nli_for_simcse.csv", "nli/nli_for_simcse.csv", False, None,
                         "SNLI+MNLI (premise, entailment, contradiction) triplets (supervised SimCSE)"),
    # DeCLUTR trains on OpenWebText (scripts/preprocess_openwebtext.py). The hub copy is split into 21
    # tar files of .xz archives of .txt documents; this entry takes the first (about 1/21 of the corpus,
    # pass url=... for another) and keeps documents of >= 2048 whitespace tokens, lowercased, as DeCLUTR.
    "openwebtext": RemoteDataset("openwebtext",
                                 "https://huggingface.co/datasets/Skylion007/openwebtext/resolve/main/subsets/"
                                 "urlsf_subset00.tar", "docs/openwebtext.jsonl", False, None,
                                 "OpenWebText documents of >= 2048 tokens (DeCLUTR), one subset", "openwebtext"),
    # The 60 articles of WikiText-2's test split (= WikiText-103's), DeCLUTR's demo corpus; the same
    # file as the shared data's docs/wikitext_docs.jsonl (see its README for the processing).
    "wikitext-docs": RemoteDataset("wikitext-docs",
                                   "https://huggingface.co/datasets/Salesforce/wikitext/resolve/main/"
                                   "wikitext-2-raw-v1/test-00000-of-00001.parquet", "docs/wikitext_docs.jsonl",
                                   False, None, "60 WikiText articles as documents (DeCLUTR, laptop profile)",
                                   "wikitext"),
    # NGCSE's hybrid data (data/download_hybrid.sh: a git-lfs clone of this hub data set, reference §8.7): its
    # scripts train on data/wiki_sts.jsonl and data/nli_sts.jsonl, rows read by cselab.methods.ngcse.read_graded_groups.
    # [unverified filename]: the hub listing could not be checked offline; the names are those of the scripts.
    "ngcse-wiki-sts": RemoteDataset("ngcse-wiki-sts", NGCSE_DATA_URL + "wiki_sts.jsonl", "ngcse/wiki_sts.jsonl",
                                    False, None, "NGCSE Wiki.STS_HT training data (hybrid: 'other' sentences + "
                                    "generated 'aigen' groups; contents unverified offline)"),
    "ngcse-nli-sts": RemoteDataset("ngcse-nli-sts", NGCSE_DATA_URL + "nli_sts.jsonl", "ngcse/nli_sts.jsonl",
                                   False, None, "NGCSE NLI.STS_HT training data (hybrid: 'other' sentences + "
                                   "generated 'aigen' groups; contents unverified offline)"),
}


# Real training text when the data root has it (CSELAB_DATA_DIR's samples, then the full registry files),
# else the course's own shipped files: kind -> ((relative path, label) in order of preference, shipped fallback).
TRAINING_TEXT: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, str]]] = {
    "unlabeled": ((("unsup/wiki_sample.txt", "wiki1m sample (SimCSE's Wikipedia sentences)"),
                   ("unsup/wiki1m_for_simcse.txt", "wiki1m (SimCSE's Wikipedia sentences)")),
                  ("toy_corpus.tsv", "the course's toy corpus (shipped)")),
    "nli": ((("nli/snli_devtest_triplets.csv", "SNLI dev/test triplets"),
             ("nli/nli_for_simcse.csv", "SNLI+MNLI triplets (SimCSE)")),
            ("toy_nli.csv", "the course's toy NLI triplets (shipped)")),
    "documents": ((("docs/wikitext_docs.jsonl", "WikiText-2 test articles"),),
                  ("toy_docs.jsonl", "the course's toy stories (shipped)")),
}


def training_text(kind: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(path, label)`` of real training text of ``kind`` (``unlabeled``, ``nli``, ``documents``) in the data root,
    else of the course's shipped stand-in, so a chapter trains on real sentences whenever it can."""
    if kind not in TRAINING_TEXT:
        raise ValueError(f"kind={kind!r}: choose one of {sorted(TRAINING_TEXT)}.")
    found, (shipped, label) = TRAINING_TEXT[kind]
    try:
        root = data_root(data_dir)
    except DataNotFoundError:
        root = None
    for relative, name in found if root is not None else ():
        if (root / relative).is_file():
            return root / relative, name
    return COURSE_DATA_DIR / shipped, label


def _sha256_from_headers(headers) -> str | None:
    for key in ("X-Linked-Etag", "ETag"):
        value = (headers.get(key) or "").strip('W/"')
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower()):
            return value.lower()
    return None


def download(name: str, dest: str | os.PathLike | None = None, *, force: bool = False,
             url: str | None = None, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download a registered data set into a data root and return its path.

    The file is streamed to a temporary name beside the target, its SHA-256 is checked,
    and only then is it renamed into place (archives are unpacked into a temporary
    folder first), so an interrupted or corrupt download never leaves a partial target.

    Args:
        name: a key of :data:`REGISTRY` (``senteval``, ``wiki1m``, ``nli``).
        dest: data root (default: ``data_root(must_exist=False)``).
        force: download again even if the target exists.
        url: override the registry URL (mirrors, tests).
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(REGISTRY)}.")
    entry = REGISTRY[name]
    root = Path(dest).expanduser() if dest is not None else data_root(must_exist=False)
    target = root / entry.target
    if target.exists() and not force:
        return target
    created = [p for p in reversed(target.parents) if not p.exists()]  # removed again if the download fails
    target.parent.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    source = url or entry.url
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as response:
            expected = entry.sha256 or _sha256_from_headers(response.headers)
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {name}", disable=not progress) as bar:
                received = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:  # a connection closed early can look like a clean end
            raise OSError(f"Download of {source} was interrupted: got {received} of {total} bytes. "
                          "Nothing was written; try again.")
        if expected and digest.hexdigest() != expected:
            raise OSError(f"Checksum mismatch for {source}: got sha256 {digest.hexdigest()}, expected {expected}. "
                          "Nothing was written; try again (or check the URL).")
        umask = _umask()
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a shared data root must stay readable
        if entry.archive:
            _unpack_senteval(tmp, target, 0o777 & ~umask)
        elif entry.preprocess:
            PREPROCESSORS[entry.preprocess](tmp, target)  # writes target atomically
        else:
            if target.exists():
                target.unlink()
            os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        for folder in reversed(created):  # deepest first; only folders this call made, and only if empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(exc, urllib.error.URLError):  # offline, DNS, proxy, HTTP 404: say what to do instead
            raise DataNotFoundError(
                f"Cannot download {name!r} from {source} ({getattr(exc, 'reason', exc)}); nothing was written. "
                f"Download it where the network reaches that host (`cselab download {name}`) and copy "
                f"{entry.target} into the data root {root}, or point CSELAB_DATA_DIR at a data root that has it."
            ) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unpack_senteval(archive: Path, target: Path, mode: int = 0o755) -> None:
    """Unpack SimCSE's senteval.tar (top-level STS/, SICK/, MR/, ...) into ``target``."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack.") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        candidates = [p.parent for p in Path(tmp).rglob("STS") if p.is_dir()]
        if not candidates:
            raise OSError(f"{archive.name}: no STS/ folder inside the archive; is it SentEval's data?")
        found = min(candidates, key=lambda p: len(p.parts))
        os.chmod(found, mode)  # TemporaryDirectory parents are 0700; the moved folder keeps its own mode
        if target.exists():
            shutil.rmtree(target)
        os.replace(found, target)


# ------------------------------------------------------------------ DeCLUTR's documents
def write_documents(documents: Iterable[tuple[str, str]], path: str | os.PathLike, min_length: int = 0,
                    tokenizer=None, lowercase: bool = False) -> dict[str, int]:
    """Write ``(title, text)`` documents as JSON Lines, keeping those of at least ``min_length`` tokens.

    DeCLUTR's preprocessing (``scripts/preprocess_openwebtext.py``, reference §7.4): whitespace
    tokens unless a tokenizer is given (then its subword tokens, as the span sampler counts), an
    optional lowercasing (DeCLUTR's default), and only documents long enough for the sampler
    (``--min-length 2048``; here ``>=``, the sampler's own rule). The file is written to a temporary
    name and renamed, so an interrupted run leaves no partial file. Returns the counts kept/dropped.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = dropped = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for title, text in documents:
                text = text.strip()
                if lowercase:
                    text = text.lower()
                length = len(tokenizer.tokenize(text)) if tokenizer is not None else len(text.split())
                if length < min_length or not text:
                    dropped += 1
                    continue
                out.write(json.dumps({"title": title, "text": text}, ensure_ascii=False) + "\n")
                kept += 1
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return {"kept": kept, "dropped": dropped}


def iter_openwebtext(archive: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of every ``.txt`` document in an OpenWebText tar: a tar of ``.xz`` archives
    (the hub's ``urlsf_subsetNN.tar``), a single ``.xz`` tar, or a plain tar of ``.txt`` files."""
    def members(tar: tarfile.TarFile) -> Iterator[tuple[str, str]]:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if member.name.endswith(".xz"):
                with tarfile.open(fileobj=handle, mode="r:xz") as inner:
                    yield from members(inner)
            elif member.name.endswith(".txt"):
                yield Path(member.name).stem, handle.read().decode("utf-8", errors="replace")

    with tarfile.open(archive) as tar:
        yield from members(tar)


def _prepare_openwebtext(download: Path, target: Path) -> None:
    counts = write_documents(iter_openwebtext(download), target, min_length=2048, lowercase=True)
    print(f"OpenWebText: kept {counts['kept']} documents of >= 2048 tokens, dropped {counts['dropped']} shorter ones.")


WIKITEXT_MARKERS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}


def wikitext_articles(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """WikiText raw lines -> ``(title, text)`` articles, as ``docs/wikitext_docs.jsonl`` was made.

    An article starts at a top-level heading `` = Title = `` that stands between blank lines (a
    formula line such as `` = 1 henry and capacitance C = `` inside a paragraph does not);
    section headings `` = = ... = = `` are dropped; paragraphs are stripped and joined with
    newlines; WikiText's `` @-@ ``, `` @,@ ``, `` @.@ `` markers become ``-``, ``,``, ``.``.
    """
    lines = [line.rstrip("\r\n") for line in lines]

    def clean(text: str) -> str:
        for marker, char in WIKITEXT_MARKERS.items():
            text = text.replace(marker, char)
        return text.strip()

    def blank(i: int) -> bool:
        return i < 0 or i >= len(lines) or not lines[i].strip()

    title, paragraphs = None, []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        top = stripped.startswith("= ") and stripped.endswith(" =") and not stripped.startswith("= =")
        if top and blank(i - 1) and blank(i + 1):
            if title is not None and paragraphs:
                yield title, "\n".join(paragraphs)
            title, paragraphs = clean(stripped[2:-2]), []
        elif stripped.startswith("= =") and stripped.endswith("= ="):
            continue  # a section heading
        elif title is not None:
            paragraphs.append(clean(stripped))
    if title is not None and paragraphs:
        yield title, "\n".join(paragraphs)


def _prepare_wikitext(download: Path, target: Path) -> None:
    import pyarrow.parquet as pq

    lines = pq.read_table(download, columns=["text"]).column("text").to_pylist()
    counts = write_documents(wikitext_articles(lines), target)
    print(f"WikiText: wrote {counts['kept']} articles.")


PREPROCESSORS = {"openwebtext": _prepare_openwebtext, "wikitext": _prepare_wikitext}
