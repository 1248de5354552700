"""Benchmark: training steps/s of cselab's unsup SimCSE step vs sentence-transformers' MNRL step.

Same model weights, same sentences, same batch size and max length, AdamW, clipping 1.0.

- cselab: the step of :func:`cselab.train.train` -- token ids prepared once, the two dropout
  views stacked into ONE forward pass of 2B sequences, MLP over [CLS], InfoNCE (tau 0.05).
- sentence-transformers: ``MultipleNegativesRankingLoss`` (scale 20 = 1/0.05) with the
  sentence as anchor and as positive, tokenised per step by ``model.tokenize`` as its data
  collator does, and one forward pass per column (2 passes of B sequences).

Reports steps/s for both, the ratio (target >= 1.0) and where cselab's step time goes
(tokenisation/collation, forward, backward, optimizer). Not a pytest test; run
``python tests/benchmarks/bench_train.py [--device cuda] [--bert-base-shape]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def sentences(n: int) -> list[str]:
    root = os.environ.get("CSELAB_DATA_DIR")
    path = Path(root) / "unsup" / "sentences.txt" if root else None
    if path is not None and path.is_file():
        lines = [s for s in path.read_text("utf-8").splitlines() if s.strip()]
    else:
        from cselab.data import read_toy_corpus

        lines = read_toy_corpus()[0]
    return (lines * (n // len(lines) + 1))[:n]


def sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per library (after 3 warm-up steps)")
    parser.add_argument("--bert-base-shape", action="store_true", help="random-init BERT-base-sized model")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both libraries (CUDA)")
    parser.add_argument("--report", type=Path, default=REPO / "build" / "benchmarks" / "train.json")
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    import cselab
    from cselab.encoders import tiny_bert
    from cselab.methods import SimCSE

    model, tokenizer = tiny_bert(0)
    what = "cselab/tiny"
    if args.bert_base_shape:
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=30522, pad_token_id=tokenizer.pad_token_id))  # BERT-base vocabulary size
        what = "random-init BERT-base shape"
    n = (args.steps + 3) * args.batch_size
    data = sentences(n)
    batches = [data[i:i + args.batch_size] for i in range(0, n, args.batch_size)]

    with tempfile.TemporaryDirectory() as tmp:
        enc = cselab.SentenceEncoder(model, tokenizer, "cls_before_pooler")
        enc.save_sentence_transformer(Path(tmp) / "st")
        st = SentenceTransformer(str(Path(tmp) / "st"), device=args.device)
        st.max_seq_length = args.max_length
        ours = cselab.SentenceEncoder.from_pretrained(Path(tmp) / "st", device=args.device)

    def autocast():
        return torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)

    # ---- cselab step
    method = SimCSE(ours.model.config.hidden_size).to(args.device)
    params = list(ours.model.parameters()) + list(method.parameters())
    opt = torch.optim.AdamW(params, lr=3e-5, weight_decay=0.0)
    ids = [ours.tokenizer(b, truncation=True, max_length=args.max_length)["input_ids"] for b in batches]  # once, as datasets.map
    ours.train()
    parts = {"collate": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def our_step(i, profile=False):
        t0 = time.perf_counter()
        batch = ours.collate(ids[i] + ids[i])
        if profile:
            sync(args.device)
        t1 = time.perf_counter()
        with autocast():
            z = method.mlp(ours.model(**batch).last_hidden_state[:, 0])  # (2B, H), one forward
            loss = cselab.losses.info_nce(*z.split(len(ids[i])), temperature=0.05)
        if profile:
            sync(args.device)
        t2 = time.perf_counter()
        loss.backward()
        if profile:
            sync(args.device)
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if profile:
            sync(args.device)
            t4 = time.perf_counter()
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[k] += v

    # ---- sentence-transformers step
    mnrl = MultipleNegativesRankingLoss(st, scale=20.0)
    st_opt = torch.optim.AdamW(st.parameters(), lr=3e-5, weight_decay=0.0)
    st.train()

    def st_step(i):
        prepare = getattr(st, "preprocess", None) or st.tokenize  # tokenize() is deprecated in v6
        features = [{k: v.to(args.device) for k, v in prepare(batches[i]).items() if torch.is_tensor(v)}
                    for _ in range(2)]
        labels = torch.arange(len(batches[i]), device=args.device)
        with autocast():
            loss = mnrl(features, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(st.parameters(), 1.0)
        st_opt.step()
        st_opt.zero_grad(set_to_none=True)

    steps = {"cselab": our_step, "sentence_transformers": st_step}
    elapsed = dict.fromkeys(steps, 0.0)
    for step in steps.values():  # warm-up
        for i in range(3):
            step(i)
    for start in range(3, 3 + args.steps, 5):  # rounds of 5 steps, alternating: load changes hit both
        for name, step in steps.items():
            sync(args.device)
            t0 = time.perf_counter()
            for i in range(start, min(start + 5, 3 + args.steps)):
                step(i)
            sync(args.device)
            elapsed[name] += time.perf_counter() - t0
    results = {name: args.steps / elapsed[name] for name in steps}
    for i in range(3, 3 + min(args.steps, 10)):  # a separate, synchronised pass for the breakdown
        our_step(i, profile=True)
    total = sum(parts.values())
    report = {
        "model": what, "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps, "bf16": args.bf16,
        "steps_per_s": results, "ratio_cselab_over_st": results["cselab"] / results["sentence_transformers"],
        "cselab_time_split": {k: round(v / total, 3) for k, v in parts.items()},
        "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
    }
    print(json.dumps(report, indent=2))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report


if __name__ == "__main__":
    main()
