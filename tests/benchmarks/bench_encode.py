"""Benchmark: ``cselab.SentenceEncoder.encode`` against ``SentenceTransformer.encode``.

Both encode the same sentences with the same local model (CPU by default, ``--device cuda``), batch size 128,
after one warm-up run each; each is timed ``--repeats`` times (the two libraries take
turns) and the best wall time is kept.
The embeddings are compared (max absolute difference), and a JSON report is written to
``build/benchmarks/encode.json``.

Model: ``--model PATH`` (a sentence-transformers directory, or a plain transformers
directory that is wrapped with mean pooling); default: the ``cselab/tiny`` BERT saved to
a temporary directory as a sentence-transformers model with mean pooling.

Sentences: every distinct sentence of STS12-16, STS-B test and SICK-R test read through
:mod:`cselab.data` from ``$CSELAB_DATA_DIR``; the shipped ``data/sts_sample.tsv`` when unset.

Not a pytest test (no ``test_`` prefix); run ``make bench`` or
``python tests/benchmarks/bench_encode.py [--model PATH] [--repeats N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REPORT = REPO / "build" / "benchmarks" / "encode.json"
BATCH_SIZE = 128
TARGET_RATIO = 1.0


def load_sentences() -> tuple[list[str], str]:
    """Distinct sentences, in first-seen order, and where they came from."""
    from cselab import data

    pairs = []
    if os.environ.get(data.DATA_ENV):
        for task in data.STS_TASKS:
            pairs.extend(data.load_sts_task(task, "test").values())
        source = f"STS12-16 + STS-B test + SICK-R test from ${data.DATA_ENV}={os.environ[data.DATA_ENV]}"
    else:
        pairs.append(data.read_scored_pairs())
        source = "data/sts_sample.tsv (CSELAB_DATA_DIR unset)"
    sentences = list(dict.fromkeys(s for p in pairs for s in (*p.sentences1, *p.sentences2)))
    return sentences, source


def _st_modules():
    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as modules
    return modules


def prepare_model(model: str | None, workdir: Path, bert_base_shape: bool = False) -> tuple[Path, str]:
    """A sentence-transformers directory both libraries load, and a description of it."""
    from sentence_transformers import SentenceTransformer

    modules = _st_modules()
    if model is not None:
        path = Path(model).expanduser().resolve()
        if not path.is_dir():
            sys.exit(f"--model {model}: not a directory (pass a local model directory)")
        if (path / "modules.json").is_file():
            return path, f"sentence-transformers dir {path}"
        source, what = path, f"transformers dir {path} + mean pooling"
    else:
        from cselab.encoders import tiny_bert

        source = workdir / "tiny-hf"
        tiny, tokenizer = tiny_bert(0)
        what = "cselab/tiny (seed 0) + mean pooling"
        if bert_base_shape:  # speed only depends on the shapes: random weights, BERT-base size
            import torch
            from transformers import BertConfig, BertModel

            torch.manual_seed(0)
            tiny = BertModel(BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
            what = "random-init BERT-base shape (12 layers, 768 hidden, tiny vocabulary) + mean pooling"
        tiny.save_pretrained(source)
        tokenizer.save_pretrained(source)
    transformer = modules.Transformer(str(source))
    dim_of = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = modules.Pooling(dim_of(), pooling_mode="mean")
    target = workdir / "st-model"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(target))
    return target, what


def time_interleaved(fns: dict, repeats: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """One warm-up run of each function, then ``repeats`` rounds that run each once in turn.

    Interleaving keeps a change of machine load from favouring one library.
    """
    results = {name: fn() for name, fn in fns.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="local model directory (sentence-transformers or transformers)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library; the best is kept")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sentences")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bert-base-shape", action="store_true",
                        help="without --model: a random-init BERT-base-sized model instead of cselab/tiny")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    import torch
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer

    import cselab

    if args.threads:
        torch.set_num_threads(args.threads)
    sentences, source = load_sentences()
    if args.limit:
        sentences = sentences[: args.limit]

    with tempfile.TemporaryDirectory(prefix="cselab-bench-") as tmp:
        path, what = prepare_model(args.model, Path(tmp), args.bert_base_shape)
        ours = cselab.SentenceEncoder.from_pretrained(path, device=args.device)
        theirs = SentenceTransformer(str(path), device=args.device)
        print(f"model:     {what} (cselab pooling={ours.pooling!r}, dim={ours.dim}, max_length={ours.max_length})")
        print(f"sentences: {len(sentences)} distinct, {source}")
        where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"batch {args.batch_size}, {where}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
              f"best of {args.repeats} (interleaved) after a warm-up")

        def run_ours():
            return ours.encode(sentences, batch_size=args.batch_size, show_progress=False)

        def run_theirs():
            return theirs.encode(sentences, batch_size=args.batch_size, show_progress_bar=False,
                                 convert_to_numpy=True)

        times, results = time_interleaved({"cselab": run_ours, "st": run_theirs}, args.repeats)
    all_ours, all_theirs = times["cselab"], times["st"]
    t_ours, t_theirs = min(all_ours), min(all_theirs)
    emb_ours, emb_theirs = results["cselab"], results["st"]

    emb_theirs = torch.as_tensor(emb_theirs, dtype=torch.float32)
    max_diff = float((emb_ours - emb_theirs).abs().max())
    ratio = t_ours / t_theirs
    report = {
        "model": what,
        "sentences": len(sentences),
        "sentence_source": source,
        "batch_size": args.batch_size,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "repeats": args.repeats,
        "limit": args.limit,
        "cselab": {"best_s": t_ours, "times_s": all_ours, "sentences_per_s": len(sentences) / t_ours},
        "sentence_transformers": {"best_s": t_theirs, "times_s": all_theirs,
                                  "sentences_per_s": len(sentences) / t_theirs},
        "ratio_cselab_over_st": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "max_abs_diff": max_diff,
        "same_embeddings": max_diff <= 1e-4,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "cselab": cselab.__version__},
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    print(f"max |cselab - sentence-transformers| = {max_diff:.2e}")
    print(f"cselab:                {t_ours:8.3f} s  {len(sentences) / t_ours:10.1f} sentences/s")
    print(f"sentence-transformers: {t_theirs:8.3f} s  {len(sentences) / t_theirs:10.1f} sentences/s")
    print(f"ratio cselab / sentence-transformers = {ratio:.3f} (target <= {TARGET_RATIO})")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(f"report: {args.report}")
    if not report["same_embeddings"]:
        print("WARNING: the two libraries disagree on the embeddings", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
