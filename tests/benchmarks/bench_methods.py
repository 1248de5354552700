"""Benchmark: seconds per training step of unsup SimCSE, ESimCSE and DiffCSE on the same batches.

Each method is the real ``cselab.methods`` head and the step is the trainer's (loss, backward,
clipping at 1.0, AdamW), on the same model weights, sentences, batch size and max length;
methods are timed in interleaved rounds (3 warm-up steps each) and the best round counts.

- SimCSE: one forward pass of 2B sequences;
- ESimCSE: one forward of 2B (the repeated view is longer), a queue of 160 in the denominator,
  then an EMA step and a no-grad forward of B sequences through the momentum encoder;
- DiffCSE: SimCSE's forward, BERT masking, a no-grad forward of the frozen generator over 2B
  sequences, and the discriminator's forward/backward over 2B sequences.

Not a pytest test; run ``python tests/benchmarks/bench_methods.py [--device cuda] [--bert-base-shape] [--bf16]``.
Writes ``build/benchmarks/methods.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import sentences, sync  # noqa: E402  (same data and CUDA sync as the other benchmark)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method (after 3 warm-up steps)")
    parser.add_argument("--bert-base-shape", action="store_true",
                        help="random-init BERT-base-sized encoder and a DistilBERT-sized generator")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best round of each counts")
    parser.add_argument("--report", type=Path, default=REPO / "build" / "benchmarks" / "methods.json")
    args = parser.parse_args(argv)

    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    import cselab
    from cselab.augment import repeat_batch
    from cselab.encoders import tiny_bert
    from cselab.methods import DiffCSE, ESimCSE, SimCSE
    from cselab.methods.diffcse import TINY_MLM, load_generator

    model, tokenizer = tiny_bert(0)
    what = "cselab/tiny + cselab/tiny-mlm"
    if args.bert_base_shape:
        torch.manual_seed(0)
        vocab = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        model = BertModel(BertConfig(**vocab))
        # DistilBERT's size: 6 layers of BERT-base width
        generator = BertForMaskedLM(BertConfig(num_hidden_layers=6, **vocab)).eval()
        what = "random-init BERT-base shape + 6-layer generator"
    n = (args.steps + 3) * args.batch_size
    data = sentences(n)
    ids = tokenizer(data, truncation=True, max_length=args.max_length)["input_ids"]  # once, as datasets.map
    repeated = repeat_batch(ids, 0.32, seed=0, special_ids=tokenizer.all_special_ids)
    steps = [(ids[i:i + args.batch_size], repeated[i:i + args.batch_size]) for i in range(0, n, args.batch_size)]

    def fresh_encoder():
        copy = type(model)(model.config)
        copy.load_state_dict(model.state_dict())
        return cselab.SentenceEncoder(copy, tokenizer, "cls").to(args.device)

    def build(name, enc):
        hidden = enc.model.config.hidden_size
        if name == "unsup SimCSE":
            return SimCSE(hidden)
        if name == "ESimCSE":
            return ESimCSE(enc, queue_size=160, momentum_init="copy")
        gen = generator if args.bert_base_shape else load_generator(TINY_MLM, enc)
        return DiffCSE(enc, gen)

    results = {}
    order = ["unsup SimCSE", "ESimCSE", "DiffCSE"] * args.rounds  # interleaved rounds, best of each
    for name in order:
        torch.manual_seed(0)
        enc = fresh_encoder()
        method = build(name, enc).to(args.device)
        params = [p for p in list(enc.model.parameters()) + list(method.parameters()) if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=3e-5, weight_decay=0.0, **({"fused": True} if "cuda" in args.device else {}))
        enc.train()
        method.train()

        def step(batch):
            rows = {"sent0": batch[0], "sent1": batch[1]}
            with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                loss = method.loss(enc, rows)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for batch in steps[:3]:
            step(batch)
        sync(args.device)
        start = time.perf_counter()
        for batch in steps[3:]:
            step(batch)
        sync(args.device)
        seconds = (time.perf_counter() - start) / args.steps
        results[name] = min(seconds, results.get(name, float("inf")))
        del enc, method, opt
    base = results["unsup SimCSE"]
    report = {
        "what": what, "device": args.device, "bf16": args.bf16, "batch_size": args.batch_size,
        "max_length": args.max_length, "steps": args.steps, "rounds": args.rounds, "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name() if "cuda" in args.device else None,
        "seconds_per_step": results, "relative_to_unsup_simcse": {k: v / base for k, v in results.items()},
    }
    print(f"{what}, {args.device}{' bf16' if args.bf16 else ''}, batch {args.batch_size}, len {args.max_length}")
    for name, seconds in results.items():
        print(f"  {name:<13} {seconds * 1000:8.1f} ms/step  ({seconds / base:.2f}x unsup SimCSE)")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2), "utf-8")
    return report


if __name__ == "__main__":
    main()
