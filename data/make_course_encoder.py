"""Experiment toward a small pre-trained encoder for the `ci` profile (not shipped yet; see data/README.md).

Route "distil a small bidirectional encoder from SmolLM2": a 4-layer BERT over the course's
8,000-piece vocabulary learns, on unlabeled offline sentences only,

  * to map its mean-pooled sentence vector (through a linear map) onto the sentence embedding of a
    real pre-trained LM, SmolLM2-135M-Instruct with a PromptEOL prompt (Jiang et al. 2023:
    `This sentence : "x" means in one word:"`, last layer, last token), by cosine distance; and
  * masked language modelling (BERT masking, 15 %), so the same weights serve as an MLM (DiffCSE's
    generator, DeCLUTR's MLM head).

No STS or SICK sentence and no similarity label is used: the teacher embeds the training sentences
themselves. Two steps, both seeded:

  python data/make_course_encoder.py teacher --sentences S.txt [S2.txt ...] --n 12000 --out build/enc/teacher.npz
  python data/make_course_encoder.py student --teacher build/enc/teacher.npz --steps 1500 --out build/enc/student

`teacher` keeps sentences of 4-40 words, removes duplicates, shuffles with random.Random(0), takes the
first N and embeds them (a few sentences per second on 2 CPU cores: the slow step). `student` trains
and saves the BertForMaskedLM in float16 with its tokenizer files.

Route "SmolLM2 itself, lower layers cached": `blocks` keeps SmolLM2's first K decoder blocks, freezes
the embeddings and block 1, and trains the rest with unsupervised SimCSE on the wiki sample, printing
STS-B dev before and during training (nothing is saved):

  python data/make_course_encoder.py blocks --data-dir ../shared/data --k 2 [--final-norm]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = 'This sentence : "{}" means in one word:"'  # PromptEOL


def read_sentences(paths: list[str], n: int) -> list[str]:
    lines = [line.strip() for path in paths for line in open(path, encoding="utf-8") if line.strip()]
    pool = list(dict.fromkeys(s for s in lines if 4 <= len(s.split()) <= 40))
    random.Random(0).shuffle(pool)
    return pool[:n]


def teacher(args) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cselab.llm_backends import _quiet_loading, resolve_chat_model

    torch.manual_seed(0)
    sentences = read_sentences(args.sentences, args.n)
    folder, gguf, label = resolve_chat_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, trust_remote_code=False)
    with _quiet_loading(True):
        lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, trust_remote_code=False).eval()
    tok.padding_side = "left"  # the last position is every prompt's last token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompts = [PROMPT.format(s) for s in sentences]
    order = np.argsort([len(p) for p in prompts])  # similar lengths per batch: less padding
    out = np.zeros((len(prompts), lm.config.hidden_size), dtype=np.float32)
    start = time.time()
    with torch.inference_mode():
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            batch = tok([prompts[j] for j in idx], return_tensors="pt", padding=True, truncation=True, max_length=64)
            out[idx] = lm.model(**batch).last_hidden_state[:, -1].float().numpy()  # (b, 576)
            if i % (args.batch_size * 20) == 0:
                print(f"{i}/{len(order)} sentences, {time.time() - start:.0f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, embeddings=out, sentences=np.array(sentences, dtype=object), teacher=label)
    print(f"{len(sentences)} sentences embedded by {label} in {time.time() - start:.0f} s -> {args.out}")


def student(args) -> None:
    from transformers import BertConfig, BertForMaskedLM

    from cselab.augment import mask_tokens
    from cselab.encoders import TINY_VOCAB, _wordpiece_tokenizer

    torch.manual_seed(0)
    data = np.load(args.teacher, allow_pickle=True)
    target = torch.from_numpy(data["embeddings"])  # (n, 576)
    sentences = [str(s) for s in data["sentences"]]
    tok = _wordpiece_tokenizer(TINY_VOCAB)
    config = BertConfig(vocab_size=len(tok), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.hidden // 64, intermediate_size=4 * args.hidden,
                        max_position_embeddings=128, pad_token_id=tok.pad_token_id)
    model = BertForMaskedLM(config)
    proj = torch.nn.Linear(args.hidden, target.shape[1])  # student space -> teacher space; not saved
    params = list(model.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / args.steps))
    ids = tok(sentences, truncation=True, max_length=args.max_length)["input_ids"]
    draw = torch.Generator().manual_seed(0)
    start = time.time()
    model.train()
    for step in range(args.steps):
        idx = torch.randint(len(ids), (args.batch_size,), generator=draw)
        rows = [ids[i] for i in idx]
        width = max(map(len, rows))
        x = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])  # (b, L)
        mask = (x != tok.pad_token_id).long()
        # one forward pass on the masked sentence serves both losses (masking doubles as noise for the
        # distillation); the MLM logits are computed at the masked positions only
        masked, labels = mask_tokens(x.clone(), tok, 0.15, attention_mask=mask, generator=draw)
        hidden = model.bert(input_ids=masked, attention_mask=mask).last_hidden_state  # (b, L, H)
        mean = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # (b, H)
        distill = (1 - F.cosine_similarity(proj(mean), target[idx], dim=-1)).mean()
        picked = labels != -100
        mlm = F.cross_entropy(model.cls(hidden[picked]), labels[picked])  # (m, V) logits
        loss = distill + args.mlm_weight * mlm
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step}: distillation {distill.item():.4f}, MLM {mlm.item():.3f}, {time.time() - start:.0f} s",
                  flush=True)
    model = model.half()
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    print(f"saved {args.out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, float16)")


def blocks(args) -> None:
    """Route "SmolLM2 itself": its first K decoder blocks as the encoder, unsupervised SimCSE on top.

    Mean pooling of the block-K hidden state (`--final-norm` applies SmolLM2's last RMSNorm, else
    the raw state); dropout p on block 1's output and in attention is SimCSE's noise; the embeddings
    and block 1 are frozen (computed without gradients: the "cached lower layers" route). Prints
    STS-B dev Spearman x100 on the first 500 pairs and the mean pairwise cosine every `--every` steps.
    """
    from scipy.stats import spearmanr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cselab.data import read_stsb
    from cselab.llm_backends import _quiet_loading, resolve_chat_model

    folder, gguf, _ = resolve_chat_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    tok.pad_token = tok.pad_token or tok.eos_token
    with _quiet_loading(True):
        lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).model
    lm.layers = lm.layers[:args.k]
    norm = lm.norm if args.final_norm else torch.nn.Identity()
    for layer in lm.layers[1:]:
        layer.self_attn.attention_dropout = args.dropout
    for p in [*lm.embed_tokens.parameters(), *lm.layers[0].parameters(), *lm.norm.parameters()]:
        p.requires_grad_(False)
    drop = torch.nn.Dropout(args.dropout)

    def encode(batch):  # mean of the block-K state over real tokens: (b, 576)
        mask = batch["attention_mask"]
        with torch.no_grad():  # frozen: embeddings and block 1
            lm.norm, top = torch.nn.Identity(), lm.layers
            lm.layers = top[:1]
            low = lm(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
            lm.layers = top
        lm.layers = top[1:]
        high = norm(lm(inputs_embeds=drop(low), attention_mask=mask).last_hidden_state)
        lm.layers = top
        m = mask.unsqueeze(-1).float()
        if args.skip_first:  # drop the first token (the attention sink with SmolLM2's massive activations)
            m = m.clone()
            m[:, 0] = 0
        return (high * m).sum(1) / m.sum(1)

    pairs = read_stsb("dev", args.data_dir)
    a, b, gold = list(pairs.sentences1)[:500], list(pairs.sentences2)[:500], np.asarray(pairs.scores)[:500]

    def score() -> str:
        lm.eval(), drop.eval()
        with torch.no_grad():
            ea, eb = (torch.cat([encode(tok(s[i:i + 128], return_tensors="pt", padding=True))
                                 for i in range(0, len(s), 128)]) for s in (a, b))
        z = F.normalize(torch.cat([ea, eb]), dim=-1)
        n = len(z)
        return (f"STS-B dev {100 * spearmanr(F.cosine_similarity(ea, eb).numpy(), gold).correlation:.2f}, "
                f"mean cosine {((z @ z.T).sum() - n).item() / (n * n - n):.3f}")

    print("before:", score(), flush=True)
    sentences = [s for s in read_sentences([f"{args.data_dir}/unsup/wiki_sample.txt"], 10 ** 9)]
    if args.sup:  # supervised SimCSE: (premise, entailment, contradiction) triplets
        import csv
        with open(f"{args.data_dir}/nli/snli_devtest_triplets.csv", encoding="utf-8") as f:
            triplets = [(r["sent0"], r["sent1"], r["hard_neg"]) for r in csv.DictReader(f)]
        random.Random(0).shuffle(triplets)
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    torch.manual_seed(args.seed)
    start = time.time()
    for step in range(args.steps):
        lm.train(), drop.train()
        if args.sup:
            rows = triplets[step * args.batch_size:(step + 1) * args.batch_size]
            batch = [r[0] for r in rows]
            z = encode(tok(batch + [r[1] for r in rows] + [r[2] for r in rows], return_tensors="pt", padding=True,
                           truncation=True, max_length=32))
            z1, z2, z3 = z.split(len(batch))
            z2 = torch.cat([z2, z3])  # positives then hard negatives: (2b, 576)
        else:
            batch = sentences[step * args.batch_size:(step + 1) * args.batch_size]
            z = encode(tok(batch + batch, return_tensors="pt", padding=True, truncation=True, max_length=32))
            z1, z2 = z.split(len(batch))  # two dropout views, (b, 576) each
        logits = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / args.temperature
        loss = F.cross_entropy(logits, torch.arange(len(batch)))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % args.every == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}, {time.time() - start:.0f} s;", score(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("teacher")
    t.add_argument("--sentences", nargs="+", required=True)
    t.add_argument("--n", type=int, default=12000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--out", required=True)
    s = sub.add_parser("student")
    s.add_argument("--teacher", required=True)
    s.add_argument("--steps", type=int, default=1500)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--max-length", type=int, default=48)
    s.add_argument("--lr", type=float, default=5e-4)
    s.add_argument("--hidden", type=int, default=256)
    s.add_argument("--layers", type=int, default=4)
    s.add_argument("--mlm-weight", type=float, default=1.0)
    s.add_argument("--out", required=True)
    k = sub.add_parser("blocks")
    k.add_argument("--data-dir", required=True, help="the data root (STS-B dev, unsup/wiki_sample.txt)")
    k.add_argument("--k", type=int, default=2, help="decoder blocks kept")
    k.add_argument("--final-norm", action="store_true", help="apply SmolLM2's final RMSNorm to block K")
    k.add_argument("--steps", type=int, default=40)
    k.add_argument("--batch-size", type=int, default=32)
    k.add_argument("--lr", type=float, default=1e-4)
    k.add_argument("--temperature", type=float, default=0.05)
    k.add_argument("--dropout", type=float, default=0.1)
    k.add_argument("--every", type=int, default=10)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--sup", action="store_true", help="supervised SimCSE on the SNLI triplets")
    k.add_argument("--skip-first", action="store_true", help="mean pooling without the first token")
    args = parser.parse_args()
    {"teacher": teacher, "student": student, "blocks": blocks}[args.command](args)


if __name__ == "__main__":
    main()
