"""GPU check of the trainer's CUDA paths (run by hand on a CUDA machine; nothing in ``make test`` needs one).

1. ``collate`` puts batches in page-locked memory and copies them without blocking; the tensors equal
   the CPU ones.
2. The ``unsup-simcse-tiny`` preset (tiny encoder, shipped data, 32 steps) on CUDA in fp32 without
   dropout gives the CPU run's losses (other kernels, same arithmetic; with dropout the masks differ,
   CUDA and CPU have separate generators); in bf16 autocast a finite loss and a score gain, with
   ``length_bucketing`` and ``compile`` too.
3. The 20 recorded fp32 CPU losses of ``tests/reference_losses.json`` on CUDA (differ by the dropout masks).

Writes ``OUT/gpu_check.json``. Run ``python tests/benchmarks/gpu_check.py [OUT]``.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def run(preset_values: dict, out: Path) -> dict:
    from cselab.configs import resolve_config
    from cselab.train import train

    config = resolve_config("unsup-simcse-tiny", **{"max_steps": 32, "eval_steps": 32, "save_steps": 32, "log_steps": 1,
                                                  **preset_values})
    start = time.perf_counter()
    result = train(config, out, progress=False)
    losses = [r["loss"] for r in result.history if "loss" in r]
    return {"values": preset_values, "initial_score": result.initial_score, "final_score": result.final_score,
            "losses": losses, "seconds": time.perf_counter() - start}


def main(out: Path) -> dict:
    import datasets.config

    cache = Path(tempfile.mkdtemp(prefix="gpu-check-hf-"))
    datasets.config.HF_DATASETS_CACHE = cache
    datasets.disable_progress_bars()
    from cselab import SentenceEncoder

    assert torch.cuda.is_available(), "gpu_check.py needs a CUDA GPU"
    report: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    enc = SentenceEncoder.from_pretrained("cselab/tiny")
    ids = enc.tokenize(["A man plays a guitar .", "Two dogs run in the park ."])["input_ids"]
    cpu_batch = enc.collate(ids)
    enc = enc.to("cuda")
    cuda_batch = enc.collate(ids)
    report["collate_equal"] = all(torch.equal(cpu_batch[k], cuda_batch[k].cpu()) for k in cpu_batch)
    report["collate_device"] = str(cuda_batch["input_ids"].device)
    report["attention"] = enc.model.config._attn_implementation

    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    runs = {
        "cpu fp32": {"device": "cpu"},
        "cuda fp32": {"device": "cuda", "precision": "fp32"},
        # dropout off: CPU and CUDA draw different dropout masks from the same seed
        "cpu fp32 no dropout": {"device": "cpu", "dropout": 0.0},
        "cuda fp32 no dropout": {"device": "cuda", "precision": "fp32", "dropout": 0.0},
        "cuda bf16": {"device": "cuda", "precision": "bf16"},
        "cuda bf16 bucketing": {"device": "cuda", "precision": "bf16", "length_bucketing": 8},
        "cuda bf16 compile": {"device": "cuda", "precision": "bf16", "compile": True},
    }
    report["runs"] = {name: run(values, root / name.replace(" ", "-")) for name, values in runs.items()}
    cpu, gpu = report["runs"]["cpu fp32 no dropout"]["losses"], report["runs"]["cuda fp32 no dropout"]["losses"]
    report["fp32_no_dropout_cuda_vs_cpu_max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(cpu, gpu))

    # the recorded fp32 CPU losses (tests/test_reference_losses.py) on CUDA
    from cselab.configs import resolve_config
    from cselab.train import train

    reference = json.loads((REPO / "tests" / "reference_losses.json").read_text("utf-8"))
    values = {k: v for k, v in reference["config"].items() if k != "preset"}
    config = resolve_config(reference["config"]["preset"], **{**values, "device": "cuda", "precision": "fp32"})
    result = train(config, root / "reference", progress=False)
    got = [row["loss"] for row in result.history if "loss" in row]
    # with dropout this differs (CUDA's dropout masks are not CPU's): recorded, not a pass/fail figure
    report["reference_losses_cuda_fp32_max_abs_diff"] = max(abs(a - b) for a, b in zip(got, reference["losses"]))
    for name, r in report["runs"].items():
        print(f"{name:22s} {r['initial_score']:.2f} -> {r['final_score']:.2f}  last loss {r['losses'][-1]:.4f}  "
              f"{r['seconds']:.1f} s")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "benchmarks")
