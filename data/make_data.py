"""Regenerate the small data files that the course ships in ``data/``.

Usage (from the repository root, inside the course environment)::

    python data/make_data.py toy        # toy_corpus.tsv, sts_sample.tsv, toy_nli.csv (no input needed)
    python data/make_data.py vocab --sentences ../shared/data/unsup/sentences.txt
    python data/make_data.py tiny-mlm   # tiny_mlm/: DiffCSE's offline generator (needs torch, transformers)
    python data/make_data.py docs       # toy_docs.jsonl: DeCLUTR's offline documents (no input needed)

Everything is deterministic: the same command gives byte-identical files.
See data/README.md for what each file is for.
"""
from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A meaning is (subject, action, place). Each slot has several surface forms with
# the same meaning, so sentences built from one meaning are paraphrases of each other.
SUBJECTS = {
    "man": ["a man", "a guy", "one man"],
    "woman": ["a woman", "a lady", "one woman"],
    "child": ["a child", "a kid", "a little kid"],
    "dog": ["a dog", "a puppy", "a small dog"],
    "cat": ["a cat", "a kitten", "a small cat"],
    "chef": ["a chef", "a cook", "the cook"],
    "student": ["a student", "a pupil", "a young student"],
    "musician": ["a musician", "a street musician", "a performer"],
}
# action -> (present participle forms, simple present forms)
ACTIONS = {
    "guitar": (["playing a guitar", "strumming a guitar", "playing the guitar"],
               ["plays a guitar", "strums a guitar", "plays the guitar"]),
    "run": (["running", "jogging", "sprinting"], ["runs", "jogs", "sprints"]),
    "cook": (["cooking dinner", "preparing a meal", "making dinner"],
             ["cooks dinner", "prepares a meal", "makes dinner"]),
    "read": (["reading a book", "reading a novel", "looking at a book"],
             ["reads a book", "reads a novel", "looks at a book"]),
    "ball": (["playing with a ball", "chasing a ball", "kicking a ball"],
             ["plays with a ball", "chases a ball", "kicks a ball"]),
    "sleep": (["sleeping", "taking a nap", "napping"], ["sleeps", "takes a nap", "naps"]),
    "eat": (["eating an apple", "biting into an apple", "eating some fruit"],
            ["eats an apple", "bites into an apple", "eats some fruit"]),
    "swim": (["swimming", "taking a swim", "doing laps"], ["swims", "takes a swim", "does laps"]),
}
PLACES = {
    "park": ["in the park", "at the park", "in a public park"],
    "kitchen": ["in the kitchen", "in a kitchen", "at the kitchen counter"],
    "beach": ["on the beach", "at the beach", "by the sea"],
    "street": ["on the street", "in the street", "on a busy street"],
}
TEMPLATES = [
    "{subj} is {ing} {place} .",
    "{place_cap} , {subj} is {ing} .",
    "{subj} {pres} {place} .",
]


def realise(meaning: tuple[str, str, str], rng: random.Random) -> str:
    subj, action, place = meaning
    ing_forms, pres_forms = ACTIONS[action]
    k = rng.randrange(3)  # the same verb form index keeps ing/pres variants aligned
    text = rng.choice(TEMPLATES).format(
        subj=rng.choice(SUBJECTS[subj]),
        ing=ing_forms[k],
        pres=pres_forms[k],
        place=rng.choice(PLACES[place]),
        place_cap=rng.choice(PLACES[place]),
    )
    return text[0].upper() + text[1:]


def similarity(a: tuple[str, str, str], b: tuple[str, str, str]) -> float:
    """Gold score on the STS 0-5 scale: weighted share of meaning slots that agree."""
    weights = (1.5, 2.5, 1.0)  # subject, action, place: the action carries most meaning
    return round(5.0 * sum(w for w, x, y in zip(weights, a, b) if x == y) / sum(weights), 2)


def change_slots(meaning: tuple[str, str, str], k: int, rng: random.Random) -> tuple[str, str, str]:
    """Replace ``k`` of the three slots of ``meaning`` by a different value."""
    out = list(meaning)
    for slot in rng.sample(range(3), k):
        options = [v for v in (SUBJECTS, ACTIONS, PLACES)[slot] if v != meaning[slot]]
        out[slot] = rng.choice(options)
    return tuple(out)  # type: ignore[return-value]


def make_toy(seed: int = 0, per_meaning: int = 4, n_pairs: int = 800) -> None:
    rng = random.Random(seed)
    meanings = list(itertools.product(SUBJECTS, ACTIONS, PLACES))  # 8 * 8 * 4 = 256
    rows = []
    for mid, meaning in enumerate(meanings):
        seen: set[str] = set()
        while len(seen) < per_meaning:
            seen.add(realise(meaning, rng))
        rows += [(mid, s) for s in sorted(seen)]
    rng.shuffle(rows)
    with open(HERE / "toy_corpus.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("meaning_id\tsentence\n")
        for mid, s in rows:
            f.write(f"{mid}\t{s}\n")

    # Scored pairs: a quarter paraphrases (score 5); the others change 1-3 random meaning
    # slots, which spreads the gold scores over the 0-5 scale. Each sentence is freshly
    # realised, so pairs rarely reuse corpus sentences verbatim.
    pair_rng = random.Random(seed + 1)
    with open(HERE / "sts_sample.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("score\tsentence1\tsentence2\n")
        for i in range(n_pairs):
            a = pair_rng.choice(meanings)
            b = a if i % 4 == 0 else change_slots(a, pair_rng.randint(1, 3), pair_rng)
            s1, s2 = realise(a, pair_rng), realise(b, pair_rng)
            f.write(f"{similarity(a, b):.2f}\t{s1}\t{s2}\n")


def make_nli(seed: int = 2, per_meaning: int = 4) -> None:
    """NLI-style triplets (premise, entailment, contradiction) in SimCSE's csv format.

    The entailment is another wording of the premise's meaning; the contradiction keeps the
    subject and place but changes the action, the closest sentence that is not a paraphrase.
    """
    import csv

    rng = random.Random(seed)
    meanings = list(itertools.product(SUBJECTS, ACTIONS, PLACES))
    rows = []
    for meaning in meanings:
        for _ in range(per_meaning):
            premise = realise(meaning, rng)
            entailment = realise(meaning, rng)
            while entailment == premise:
                entailment = realise(meaning, rng)
            other = (meaning[0], rng.choice([a for a in ACTIONS if a != meaning[1]]), meaning[2])
            rows.append((premise, entailment, realise(other, rng)))
    rng.shuffle(rows)
    with open(HERE / "toy_nli.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerows(rows)


def make_docs(seed: int = 4, n_docs: int = 96, min_scenes: int = 5, max_scenes: int = 14) -> None:
    """Short "stories" for DeCLUTR's span sampling, one JSON object per line: {"title", "text"}.

    A story follows one subject. It is a walk over scenes: each scene is one meaning
    (subject, action, place) told in 2-4 different wordings, and the next scene changes the
    action, the place or both. So nearby text shares meaning (what DeCLUTR's positives
    assume of real documents) and distant text in the same story shares at least the subject.
    One paragraph per scene.
    """
    import json

    rng = random.Random(seed)
    subjects = list(SUBJECTS)
    with open(HERE / "toy_docs.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for number in range(n_docs):
            subject = subjects[number % len(subjects)]
            action, place = rng.choice(list(ACTIONS)), rng.choice(list(PLACES))
            paragraphs = []
            for _ in range(rng.randint(min_scenes, max_scenes)):
                meaning = (subject, action, place)
                wordings: list[str] = []
                while len(wordings) < rng.randint(2, 4):
                    text = realise(meaning, rng)
                    if text not in wordings:
                        wordings.append(text)
                paragraphs.append(" ".join(wordings))
                change = rng.choice(("action", "place", "both"))
                if change in ("action", "both"):
                    action = rng.choice([a for a in ACTIONS if a != action])
                if change in ("place", "both"):
                    place = rng.choice([p for p in PLACES if p != place])
            title = f"Story {number + 1}: {SUBJECTS[subject][0]}"
            f.write(json.dumps({"title": title, "text": "\n".join(paragraphs)}) + "\n")


def make_vocab(sentences: Path, vocab_size: int = 8000) -> None:
    from tokenizers import BertWordPieceTokenizer

    toy = [line.split("\t", 1)[1] for line in (HERE / "toy_corpus.tsv").read_text("utf-8").splitlines()[1:]]
    tok = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    # Corpus text first, then the toy sentences so every toy word is in the vocabulary.
    tok.train_from_iterator(
        itertools.chain(sentences.read_text("utf-8").splitlines(), toy * 5),
        vocab_size=vocab_size,
        min_frequency=2,
        limit_alphabet=200,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    )
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    with open(HERE / "tiny_vocab.txt", "w", encoding="utf-8", newline="\n") as f:
        for token, _ in vocab:
            f.write(token + "\n")


def make_tiny_mlm(steps: int = 600, seed: int = 0) -> None:
    """A tiny masked-LM over ``tiny_vocab.txt``, trained on the toy corpus: DiffCSE's ``ci`` generator.

    1 layer, hidden 64, 2 heads; BERT masking (30 %, 80/10/10) of the 1,024 toy sentences,
    ``steps`` AdamW steps of batch 64 at lr 2e-3. Saved in float16 (about 1 MB) as a
    transformers directory ``tiny_mlm/`` that ``cselab`` loads as ``cselab/tiny-mlm``.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from cselab.augment import mask_tokens
    from cselab.encoders import TINY_VOCAB, _wordpiece_tokenizer

    torch.manual_seed(seed)
    tok = _wordpiece_tokenizer(TINY_VOCAB)
    sentences = [line.split("\t", 1)[1] for line in (HERE / "toy_corpus.tsv").read_text("utf-8").splitlines()[1:]]
    enc = tok(sentences, padding=True, return_tensors="pt")
    config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    model = BertForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        rows = torch.randint(len(sentences), (64,), generator=g)
        ids, mask = enc["input_ids"][rows], enc["attention_mask"][rows]
        masked, labels = mask_tokens(ids, tok, 0.30, attention_mask=mask, generator=g)
        loss = model(input_ids=masked, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step}: MLM loss {loss.item():.3f}")
    model.half().save_pretrained(HERE / "tiny_mlm", safe_serialization=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("toy", help="write toy_corpus.tsv, sts_sample.tsv and toy_nli.csv")
    v = sub.add_parser("vocab", help="write tiny_vocab.txt")
    v.add_argument("--sentences", type=Path, required=True, help="unlabeled sentences, one per line")
    v.add_argument("--vocab-size", type=int, default=8000)
    m = sub.add_parser("tiny-mlm", help="write tiny_mlm/ (DiffCSE's offline generator)")
    m.add_argument("--steps", type=int, default=600)
    sub.add_parser("docs", help="write toy_docs.jsonl (DeCLUTR's offline documents)")
    args = parser.parse_args()
    if args.what == "toy":
        make_toy()
        make_nli()
    elif args.what == "docs":
        make_docs()
    elif args.what == "tiny-mlm":
        make_tiny_mlm(args.steps)
    else:
        make_vocab(args.sentences, args.vocab_size)


if __name__ == "__main__":
    main()
