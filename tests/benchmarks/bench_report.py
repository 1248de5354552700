"""Benchmark report: training-step throughput of the four unsupervised methods, and SimCSE vs sentence-transformers.

For unsup SimCSE, ESimCSE, DiffCSE and DeCLUTR the step is exactly the trainer's: the ``<method>-ci``
preset (the tiny model; DeCLUTR with its ``declutr-ci`` spans on ``data/toy_docs.jsonl``), the training
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

The sentence-transformers ratio comes from ``bench_train.py`` (MNRL on the same weights).
Writes ``build/benchmarks/report.json`` and ``build/benchmarks/report.md``.
Run ``python tests/benchmarks/bench_report.py [--device cuda] [--steps N]``.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import sync  # noqa: E402

METHODS = {"unsup SimCSE": "unsup-simcse-ci", "ESimCSE": "esimcse-ci", "DiffCSE": "diffcse-ci",
           "DeCLUTR": "declutr-ci"}


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--st-steps", type=int, default=20, help="steps for the sentence-transformers comparison")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak for MFU (CUDA only)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "benchmarks")
    args = parser.parse_args(argv)

    import datasets.config
    import torch

    cache = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    datasets.config.HF_DATASETS_CACHE = cache
    datasets.disable_progress_bars()

    from cselab import SentenceEncoder
    from cselab.configs import resolve_config
    from cselab.methods import build_method
    from cselab.train import _Trainable, load_training_data, parameter_groups, set_dropout

    device = torch.device(args.device)
    load_before = load_average()
    results: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name, preset in METHODS.items():
            config = resolve_config(preset)
            torch.manual_seed(config.seed)
            encoder = SentenceEncoder.from_pretrained(config.model, pooling=config.train_pooling, seed=config.seed)
            encoder = encoder.to(device)
            set_dropout(encoder.model, config.dropout)
            method = build_method(config, encoder).to(device)
            modules = _Trainable(encoder, method)
            dataset = load_training_data(config, encoder.tokenizer, method.columns, None,
                                         getattr(method, "tokenize_kwargs", None), getattr(method, "keep_columns", ()))
            if hasattr(method, "prepare_dataset"):
                dataset = method.prepare_dataset(dataset, encoder.tokenizer)
            optimizer = torch.optim.AdamW(parameter_groups(modules, config.weight_decay), lr=config.learning_rate,
                                          **({"fused": True} if device.type == "cuda" else {}))
            seq_lens: list[int] = []

            def count(module, args_, kwargs):
                mask = kwargs.get("attention_mask")
                if mask is not None:
                    seq_lens.extend(mask.sum(dim=1).tolist())

            hook = encoder.model.register_forward_pre_hook(count, with_kwargs=True)
            modules.train()
            needed = 3 + args.steps
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
            sync(args.device)
            seq_lens.clear()
            start = time.perf_counter()
            for rows in batches[3:]:
                step(rows)
            sync(args.device)
            seconds = (time.perf_counter() - start) / args.steps
            hook.remove()
            tokens = sum(seq_lens) / args.steps
            row = {"preset": preset, "batch_size": config.batch_size, "max_length": config.max_length,
                   "seconds_per_step": seconds, "steps_per_s": 1 / seconds, "tokens_per_step": tokens,
                   "tokens_per_s": tokens / seconds}
            if device.type == "cuda":
                cfg = encoder.model.config
                dense = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" not in n)
                flops = flops_per_step(cfg, dense, seq_lens) / args.steps
                row.update(flops_per_step=flops, mfu=flops / seconds / (args.peak_tflops * 1e12))
            if name not in results or seconds < results[name]["seconds_per_step"]:
                results[name] = row
            del encoder, method, modules, optimizer

    from bench_train import main as bench_train_main

    st = bench_train_main(["--device", args.device, "--steps", str(args.st_steps),
                           "--report", str(args.out / "train.json")])
    hardware = (torch.cuda.get_device_name() if device.type == "cuda"
                else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    report = {
        "device": args.device, "hardware": hardware, "torch": torch.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_average(),
        "steps": args.steps, "rounds": args.rounds, "methods": results,
        "sentence_transformers_mnrl": {"steps_per_s": st["steps_per_s"], "ratio_cselab_over_st": st["ratio_cselab_over_st"],
                                       "batch_size": st["batch_size"], "max_length": st["max_length"]},
        "mfu_note": "MFU only on CUDA (see the module docstring for the FLOP count)",
    }
    base = results["unsup SimCSE"]["seconds_per_step"]
    lines = [f"{args.device} ({hardware}), torch {torch.__version__}, load average {load_before} before / "
             f"{report['load_average_after']} after", "",
             "| method (preset) | batch × max_length | ms/step | steps/s | tokens/s | × unsup SimCSE |"
             + (" MFU |" if device.type == "cuda" else ""),
             "|---|---|---|---|---|---|" + ("---|" if device.type == "cuda" else "")]
    for name, row in results.items():
        lines.append(f"| {name} (`{row['preset']}`) | {row['batch_size']} × {row['max_length']} | "
                     f"{row['seconds_per_step'] * 1000:.1f} | {row['steps_per_s']:.2f} | {row['tokens_per_s']:,.0f} | "
                     f"{row['seconds_per_step'] / base:.2f} |" + (f" {row['mfu']:.1%} |" if "mfu" in row else ""))
    mnrl = report["sentence_transformers_mnrl"]
    lines += ["", f"unsup SimCSE vs sentence-transformers MNRL (batch {mnrl['batch_size']}, {mnrl['max_length']} tokens): "
              f"{mnrl['steps_per_s']['cselab']:.2f} vs {mnrl['steps_per_s']['sentence_transformers']:.2f} steps/s, "
              f"ratio {mnrl['ratio_cselab_over_st']:.2f}"]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    (args.out / "report.md").write_text(markdown, "utf-8")
    return report


if __name__ == "__main__":
    main()
