"""Benchmark report: training-step throughput of the four unsupervised methods, and SimCSE vs sentence-transformers.

For unsup SimCSE, ESimCSE, DiffCSE and DeCLUTR the step is exactly the trainer's: the ``<method>-ci``
preset (the tiny model; DeCLUTR with its ``declutr-tiny`` spans on ``data/toy_docs.jsonl``), the training
file tokenised by :func:`cselab.train.load_training_data` and the method's ``prepare_dataset``, rows taken
in order, then loss, backward, clipping at 1.0 and AdamW. Timed after 3 warm-up steps, best of
``--rounds`` interleaved rounds. tokens/s counts the real (non-padding) tokens that went through the
encoder's forward (both views; a momentum encoder's or generator's forward not counted), from a
forward pre-hook on the encoder.

MFU (CUDA only, printed and stored when a GPU runs it): achieved FLOP/s over the GPU's peak
(``--peak-tflops``, default 989 = H100 SXM dense bf16). FLOPs per step = 6 x (encoder parameters
without embeddings) x tokens  +  12 x layers x hidden x sum(seq_len^2) for attention (QK^T and AV,
forward and backward); the extra forwards of ESimCSE/DiffCSE are not counted, so their MFU is a
lower bound. On CPU no MFU is reported.

``--bert-base-shape`` (for a GPU): the four *paper* presets (``unsup-simcse-bert-base``,
``esimcse-bert-base``, ``diffcse-bert-base``, ``declutr-base``) with only the weights swapped for a
random-init BERT-base (12 x 768, vocabulary 30,522; DiffCSE's generator a random-init DistilBERT MLM)
and the data for ``$CSELAB_DATA_DIR/unsup/sentences.txt`` and the documents of
``$CSELAB_DATA_DIR/docs/wikitext_docs.jsonl`` long enough for DeCLUTR's 2 x 2 x 512-token rule
(tokens from the course's WordPiece vocabulary, so sentences split into more pieces than with
BERT's own). Speed does not depend on the weights' values. ``--sweep 64,256,1024`` adds unsup
SimCSE at those batch sizes (MFU against batch), ``--compile`` adds it with ``compile=True`` at the
preset's batch and the largest swept one.
``--static 16,32`` adds, for every timed method, a row with ``static_shapes=(16, 32)`` (every batch
padded to one of those lengths) and, with ``--compile`` on CUDA, one that also compiles with
``compile_mode="reduce-overhead"`` (CUDA graphs). Every row stores ``wiki1m_epoch_minutes``, the
time of one 10^6-sentence epoch at that speed.

The sentence-transformers ratio comes from ``bench_train.py`` (MNRL on the same weights and batch).
Writes ``build/benchmarks/report.json`` and ``build/benchmarks/report.md``.
Run ``python tests/benchmarks/bench_report.py [--device cuda] [--bert-base-shape] [--steps N]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import sync  # noqa: E402

METHODS = {"unsup SimCSE": "unsup-simcse-tiny", "ESimCSE": "esimcse-tiny", "DiffCSE": "diffcse-tiny",
           "DeCLUTR": "declutr-tiny"}


def flops_per_step(model_config, n_params_no_embeddings: int, seq_lens: list[int]) -> float:
    """6 N T for the dense part (forward + backward) plus the attention term 12 L H sum(s^2)."""
    tokens = sum(seq_lens)
    attention = 12 * model_config.num_hidden_layers * model_config.hidden_size * sum(s * s for s in seq_lens)
    return 6 * n_params_no_embeddings * tokens + attention


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


BASE_PRESETS = {"unsup SimCSE": "unsup-simcse-bert-base", "ESimCSE": "esimcse-bert-base",
                "DiffCSE": "diffcse-bert-base", "DeCLUTR": "declutr-base"}


def bert_base_shape_files(root: Path) -> dict[str, str]:
    """Random-init BERT-base encoder and DistilBERT MLM generator directories, and the training files."""
    import torch
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertForMaskedLM

    from cselab.data import read_documents, read_toy_corpus, write_documents
    from cselab.encoders import TINY_VOCAB, _wordpiece_tokenizer

    tokenizer = _wordpiece_tokenizer(TINY_VOCAB)
    torch.manual_seed(0)
    encoder_dir, generator_dir = root / "bert-base-shape", root / "distilbert-mlm-shape"
    BertModel(BertConfig(vocab_size=30522, pad_token_id=tokenizer.pad_token_id)).save_pretrained(encoder_dir)
    DistilBertForMaskedLM(DistilBertConfig(vocab_size=30522, pad_token_id=tokenizer.pad_token_id)
                          ).save_pretrained(generator_dir)
    for folder in (encoder_dir, generator_dir):
        tokenizer.save_pretrained(folder)
    data = os.environ.get("CSELAB_DATA_DIR")
    sentences_file = Path(data) / "unsup" / "sentences.txt" if data else None
    if sentences_file is None or not sentences_file.is_file():
        sentences_file = root / "sentences.txt"
        sentences_file.write_text("\n".join(read_toy_corpus()[0]) + "\n", "utf-8")
    docs_file = Path(data) / "docs" / "wikitext_docs.jsonl" if data else None
    if docs_file is None or not docs_file.is_file():
        raise FileNotFoundError("--bert-base-shape needs $CSELAB_DATA_DIR/docs/wikitext_docs.jsonl for DeCLUTR.")
    documents = [(d["title"], d["text"]) for d in read_documents(docs_file)]
    long_docs = root / "long_docs.jsonl"
    counts = write_documents(documents, long_docs, min_length=2 * 2 * 512, tokenizer=tokenizer)
    return {"model": str(encoder_dir), "generator": str(generator_dir), "sentences": str(sentences_file),
            "documents": str(long_docs), "documents_kept": counts["kept"]}


def time_method(config, device, steps: int, peak_tflops: float, tokens_from: dict | None = None) -> dict:
    """Seconds per trainer step of ``config`` (one pass of ``steps`` after 3 warm-up steps).

    With ``config.compile`` no counting hook is put on the model (dynamo would trace it and recompile
    at every step); the token and FLOP counts are then taken from ``tokens_from``, the uncompiled row
    of the same preset and batch size (same rows in the same order, so the same lengths)."""
    import torch

    from cselab import SentenceEncoder
    from cselab.methods import build_method
    from cselab.train import _Trainable, method_dataset, parameter_groups, set_dropout

    torch.manual_seed(config.seed)
    encoder = SentenceEncoder.from_pretrained(config.model, pooling=config.train_pooling, seed=config.seed)
    encoder = encoder.to(device)
    set_dropout(encoder.model, config.dropout)
    method = build_method(config, encoder).to(device)
    modules = _Trainable(encoder, method)
    dataset = method_dataset(config, encoder, method)
    encoder.pad_lengths = config.static_shapes  # as the trainer: () = each batch to its longest row
    if config.compile:
        static = bool(config.static_shapes)
        encoder.model.compile(dynamic=not static, **({"mode": config.compile_mode} if static else {}))
    optimizer = torch.optim.AdamW(parameter_groups(modules, config.weight_decay), lr=config.learning_rate,
                                  eps=config.adam_epsilon, **({"fused": True} if device.type == "cuda" else {}))
    seq_lens: list[int] = []

    def count(module, args_, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None:
            seq_lens.extend(mask.sum(dim=1).tolist())

    hook = None if config.compile else encoder.model.register_forward_pre_hook(count, with_kwargs=True)
    modules.train()
    needed = 3 + steps
    batches = [dataset[[(i * config.batch_size + j) % len(dataset) for j in range(config.batch_size)]]
               for i in range(needed)]
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def step(rows):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = method.loss(encoder, rows)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for rows in batches[:3]:
        step(rows)
    sync(str(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seq_lens.clear()
    start = time.perf_counter()
    for rows in batches[3:]:
        step(rows)
    sync(str(device))
    seconds = (time.perf_counter() - start) / steps
    if hook is not None:
        hook.remove()
        tokens = sum(seq_lens) / steps
    else:
        tokens = tokens_from["tokens_per_step"]
    row = {"preset": config.method, "batch_size": config.batch_size, "max_length": config.max_length,
           "compile": config.compile, "static_shapes": list(config.static_shapes), "seconds_per_step": seconds, "steps_per_s": 1 / seconds,
           "tokens_per_step": tokens, "tokens_per_s": tokens / seconds}
    if device.type == "cuda":
        cfg = encoder.model.config
        dense = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" not in n)
        flops = flops_per_step(cfg, dense, seq_lens) / steps if hook is not None else tokens_from["flops_per_step"]
        row.update(flops_per_step=flops, mfu=flops / seconds / (peak_tflops * 1e12),
                   peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30)
    print(f"{config.method}: batch {config.batch_size}, compile {config.compile}: {seconds * 1000:.1f} ms/step, "
          f"{row['tokens_per_s']:,.0f} tokens/s" + (f", MFU {row['mfu']:.1%}" if "mfu" in row else ""), flush=True)
    del encoder, method, modules, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def table(rows: dict[str, dict], base: float, cuda: bool) -> list[str]:
    lines = ["| run (preset) | batch × max_length | ms/step | steps/s | tokens/s | × unsup SimCSE |"
             + (" MFU | peak memory |" if cuda else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if cuda else "")]
    for name, row in rows.items():
        lines.append(f"| {name} (`{row['preset']}`) | {row['batch_size']} × {row['max_length']} | "
                     f"{row['seconds_per_step'] * 1000:.1f} | {row['steps_per_s']:.2f} | {row['tokens_per_s']:,.0f} | "
                     f"{row['seconds_per_step'] / base:.2f} |"
                     + (f" {row['mfu']:.1%} | {row['peak_memory_gib']:.1f} GiB |" if "mfu" in row else ""))
    return lines


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--st-steps", type=int, default=20, help="steps for the sentence-transformers comparison")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak for MFU (CUDA only)")
    parser.add_argument("--bert-base-shape", action="store_true", help="paper presets on random-init BERT-base")
    parser.add_argument("--sweep", default="", help="comma-separated batch sizes for extra unsup SimCSE rows")
    parser.add_argument("--compile", action="store_true", help="add unsup SimCSE rows with compile=True")
    parser.add_argument("--static", default="", help="comma-separated pad lengths: add each method's row with "
                                                      "static_shapes (and, with --compile on CUDA, CUDA graphs)")
    parser.add_argument("--only", default="", help="comma-separated method names to time (default: all four)")
    parser.add_argument("--no-st", action="store_true", help="skip the sentence-transformers comparison")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "benchmarks")
    args = parser.parse_args(argv)

    import datasets.config
    import torch

    cache = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    datasets.config.HF_DATASETS_CACHE = cache
    datasets.disable_progress_bars()

    from cselab.configs import resolve_config

    device = torch.device(args.device)
    load_before = load_average()
    files = None
    if args.bert_base_shape:
        files = bert_base_shape_files(cache)
        presets = {}
        for name, preset in BASE_PRESETS.items():
            values = {"model": files["model"], "train_file": files["documents" if name == "DeCLUTR" else "sentences"]}
            if name == "DiffCSE":
                values["generator"] = files["generator"]
            presets[name] = resolve_config(preset, **values)
    else:
        presets = {name: resolve_config(preset) for name, preset in METHODS.items()}
    if args.only:
        presets = {name: config for name, config in presets.items() if name in args.only.split(",")}
    results: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name, config in presets.items():
            row = time_method(config, device, args.steps, args.peak_tflops)
            row["preset"] = BASE_PRESETS[name] if args.bert_base_shape else METHODS[name]
            if name not in results or row["seconds_per_step"] < results[name]["seconds_per_step"]:
                results[name] = row
    extra: dict[str, dict] = {}
    simcse = presets["unsup SimCSE"]
    for batch in [int(b) for b in args.sweep.split(",") if b.strip()]:
        extra[f"unsup SimCSE, batch {batch}"] = time_method(dataclasses.replace(simcse, batch_size=batch), device,
                                                           args.steps, args.peak_tflops)
    if args.compile:
        for batch in sorted({simcse.batch_size, max([int(b) for b in args.sweep.split(",") if b.strip()],
                                                    default=simcse.batch_size)}):
            plain = extra.get(f"unsup SimCSE, batch {batch}", results["unsup SimCSE"])
            extra[f"unsup SimCSE, batch {batch}, compile"] = time_method(
                dataclasses.replace(simcse, batch_size=batch, compile=True), device, args.steps, args.peak_tflops,
                tokens_from=plain)
    for name, row in extra.items():
        row["preset"] = results["unsup SimCSE"]["preset"]
    shapes = tuple(int(x) for x in args.static.split(",") if x.strip())
    if shapes:  # the static-shape path of each timed method, plus CUDA graphs (reduce-overhead) on CUDA
        for name, config in presets.items():
            static = dataclasses.replace(config, static_shapes=shapes)
            extra[f"{name}, static shapes {shapes}"] = dict(time_method(static, device, args.steps, args.peak_tflops),
                                                           preset=results[name]["preset"])
            if args.compile and device.type == "cuda":
                graphs = dataclasses.replace(static, compile=True, compile_mode="reduce-overhead")
                extra[f"{name}, static shapes {shapes}, CUDA graphs"] = dict(
                    time_method(graphs, device, args.steps, args.peak_tflops,
                                tokens_from=extra[f"{name}, static shapes {shapes}"]), preset=results[name]["preset"])
    for row in [*results.values(), *extra.values()]:  # one wiki1m epoch (10^6 sentences) at this speed
        row["wiki1m_epoch_minutes"] = 1e6 / row["batch_size"] * row["seconds_per_step"] / 60

    from bench_train import main as bench_train_main

    st_runs = {}
    for bf16 in ([] if args.no_st else [False, True] if device.type == "cuda" else [False]):
        st_runs["bf16" if bf16 else "fp32"] = bench_train_main(
            ["--device", args.device, "--steps", str(args.st_steps), "--report",
             str(args.out / f"train-{'bf16' if bf16 else 'fp32'}.json")]
            + (["--bert-base-shape"] if args.bert_base_shape else []) + (["--bf16"] if bf16 else []))
    hardware = (torch.cuda.get_device_name() if device.type == "cuda"
                else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    report = {
        "device": args.device, "hardware": hardware, "torch": torch.__version__, "platform": platform.platform(),
        "model": "random-init BERT-base shape" if args.bert_base_shape else "cselab/tiny",
        "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_average(),
        "steps": args.steps, "rounds": args.rounds, "methods": results, "extra": extra,
        "data": files,
        "sentence_transformers_mnrl": {
            precision: {"steps_per_s": st["steps_per_s"], "ratio_cselab_over_st": st["ratio_cselab_over_st"],
                        "batch_size": st["batch_size"], "max_length": st["max_length"],
                        "cselab_time_split": st["cselab_time_split"]}
            for precision, st in st_runs.items()},
        "peak_tflops": args.peak_tflops,
        "mfu_note": "MFU only on CUDA (see the module docstring for the FLOP count)",
    }
    cuda = device.type == "cuda"
    base = results["unsup SimCSE"]["seconds_per_step"]
    lines = [f"{args.device} ({hardware}), {report['model']}, torch {torch.__version__}, "
             f"load average {load_before} before / {report['load_average_after']} after"
             + (f", MFU against {args.peak_tflops:g} TFLOP/s dense bf16" if cuda else ""), ""]
    lines += table({**results, **extra}, base, cuda)
    for precision, mnrl in report["sentence_transformers_mnrl"].items():
        lines += ["", f"unsup SimCSE vs sentence-transformers MNRL, {precision} (batch {mnrl['batch_size']}, "
                      f"{mnrl['max_length']} tokens): {mnrl['steps_per_s']['cselab']:.2f} vs "
                      f"{mnrl['steps_per_s']['sentence_transformers']:.2f} steps/s, ratio "
                      f"{mnrl['ratio_cselab_over_st']:.2f}; cselab's step: "
                      + ", ".join(f"{k} {v:.0%}" for k, v in mnrl["cselab_time_split"].items())]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    (args.out / "report.md").write_text(markdown, "utf-8")
    return report


if __name__ == "__main__":
    main()
