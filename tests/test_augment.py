"""Tests for cselab.augment (ESimCSE word repetition) against independent references.

Expectations come from literal transcriptions of the official ``ESimCSE/train.py:prepare_features``
snippets (``--dup_type bpe`` and ``--dup_type word``) run with their own ``random.Random``, from
an independent "is this an in-place repetition of that" checker, from plain counting and from a
chi-square test -- never from the code under test. Background: reference/methods.md §5.1, §14.4.
"""
from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import chisquare

from cselab.augment import repeat_batch, word_repetition, word_repetition_words

CLS, SEP, PAD, UNK = 101, 102, 0, 100
RATES = [0.05, 0.1, 0.2, 0.28, 0.3, 0.32, 0.5, 0.9]


# ---------------------------------------------------------------------------- references
def official_bpe(input_ids, dup_rate, rnd):
    """Literal transcription of ESimCSE/train.py (``dup_type == "bpe"``, second view), max 10."""
    input_len = len(input_ids)
    if int(dup_rate * input_len) > 0:
        add_len = rnd.randrange(min(10, int(dup_rate * input_len)))
        dup = sorted(rnd.sample(range(1, input_len - 1), add_len))  # not [CLS]
        new_input_ids = []
        for i, _id in enumerate(input_ids):
            if i in dup:
                new_input_ids.append(_id)
            new_input_ids.append(_id)
    else:
        new_input_ids = input_ids
    return list(new_input_ids)


def official_word(sent, dup_rate, rnd):
    """Literal transcription of ESimCSE/train.py (``dup_type == "word"``, ``add_stop`` off)."""
    sent_list = sent.split(' ')
    sent_len = len(sent_list)
    if sent_len > 0:
        add_len = rnd.randrange(min(10, sent_len, max(2, int(dup_rate * sent_len))))
        dup = sorted(rnd.sample(range(0, sent_len - 1), add_len))
        for i in dup:
            sent_list[i] = sent_list[i] + ' ' + sent_list[i]
        return ' '.join(sent_list)
    return sent


def multiplicities(inp, out):
    """How often each input item is emitted, if ``out`` expands every item of ``inp`` to 1 or 2
    adjacent copies in order; None otherwise. Dynamic programming, so repeated items are fine."""
    n, m = len(inp), len(out)
    # reach[i][j]: inp[:i] can produce out[:j]; back-pointers keep one solution.
    back = [[None] * (m + 1) for _ in range(n + 1)]
    back[0][0] = 0
    for i in range(n):
        for j in range(m + 1):
            if back[i][j] is None:
                continue
            for k in (1, 2):
                if j + k <= m and all(out[j + t] == inp[i] for t in range(k)) and back[i + 1][j + k] is None:
                    back[i + 1][j + k] = k
    if back[n][m] is None:
        return None
    mult, j = [], m
    for i in range(n, 0, -1):
        k = back[i][j]
        mult.append(k)
        j -= k
    return mult[::-1]


def collapse_runs(out):
    """Remove one copy of each adjacent duplicate: (items, run lengths)."""
    items, runs = [], []
    for x in out:
        if items and items[-1] == x:
            runs[-1] += 1
        else:
            items.append(x)
            runs.append(1)
    return items, runs


def distinct_ids(rnd, length):
    """[CLS] w1 .. w_{L-2} [SEP] with distinct word ids (L >= 2), or a lone [CLS] for L = 1."""
    if length == 1:
        return [CLS]
    return [CLS] + rnd.sample(range(1000, 9000), length - 2) + [SEP]


def cases(count, seed=0, max_len=40):
    rnd = random.Random(seed)
    for case in range(count):
        length = rnd.randint(1, max_len)
        yield case, distinct_ids(rnd, length), rnd.choice(RATES)


# ---------------------------------------------------------------------------- bpe rule
def test_matches_official_snippet_exactly():
    for case, ids, rate in cases(600, seed=1):
        got = word_repetition(ids, rate, random.Random(case))
        assert got == official_bpe(ids, rate, random.Random(case)), (ids, rate, case)


def test_shared_generator_matches_official_sequence():
    """One generator over many sequences draws as the official loop over a map batch."""
    ours, theirs = random.Random(7), random.Random(7)
    for _, ids, rate in cases(300, seed=2):
        assert word_repetition(ids, rate, ours) == official_bpe(ids, rate, theirs)


def test_length_gain_is_the_drawn_count_and_below_bound():
    for case, ids, rate in cases(800, seed=3):
        out = word_repetition(ids, rate, random.Random(case))
        gain, bound = len(out) - len(ids), int(rate * len(ids))
        if bound == 0:
            assert gain == 0
        else:
            assert gain == random.Random(case).randrange(min(10, bound))  # the first draw is add_len
            assert 0 <= gain < min(10, bound)


def test_undoing_repetitions_recovers_the_input():
    for case, ids, rate in cases(800, seed=4):
        out = word_repetition(ids, rate, random.Random(case))
        items, runs = collapse_runs(out)
        assert items == ids
        assert set(runs) <= {1, 2}
        assert runs[0] == 1 and runs[-1] == 1  # never [CLS] nor [SEP]
        assert sum(r - 1 for r in runs) == len(out) - len(ids)


def test_special_ids_and_ends_are_never_repeated():
    rnd = random.Random(5)
    for case in range(500):
        words = rnd.sample(range(1000, 9000), rnd.randint(1, 30))
        for _ in range(rnd.randint(0, 3)):
            words.insert(rnd.randrange(len(words) + 1), UNK)
        ids = [CLS] + words + [SEP] + [PAD] * rnd.randint(0, 8)
        # padded: [SEP] is no longer the last position, so it must be named as special
        special = {PAD, UNK, SEP} if ids[-1] == PAD else {UNK}
        out = word_repetition(ids, rnd.choice(RATES), random.Random(case), special_ids=special)
        assert multiplicities(ids, out) is not None
        assert out[:2] == ids[:2]
        for token in (CLS, SEP, PAD, UNK):  # each copy of a special id comes from itself
            assert out.count(token) == ids.count(token)


def test_only_the_last_position_is_protected_by_default():
    """Without special_ids, a padded sequence's [SEP] is an inner token (document, don't guess)."""
    ids = [CLS, 5, 6, SEP, PAD, PAD, PAD, PAD, PAD, PAD, PAD]
    seen = set()
    for case in range(400):
        out = word_repetition(ids, 0.9, random.Random(case))
        assert out[-1] == PAD and out[0] == CLS and out[1] != CLS
        seen.add(out.count(SEP))
    assert seen == {1, 2}


def test_more_draws_than_candidates_use_all_candidates():
    """rate 1 on short sequences can draw more repetitions than inner tokens (official: ValueError)."""
    for case in range(200):
        assert word_repetition([CLS, SEP], 1.0, random.Random(case)) == [CLS, SEP]
        out = word_repetition([CLS, 7, SEP], 1.0, random.Random(case))
        assert out in ([CLS, 7, SEP], [CLS, 7, 7, SEP])
        out = word_repetition([CLS, PAD, PAD, SEP], 1.0, random.Random(case), special_ids={PAD})
        assert out == [CLS, PAD, PAD, SEP]


def test_add_len_is_uniform():
    for length, rate, k in [(32, 0.32, 10), (20, 0.32, 6), (64, 0.32, 10)]:
        ids = distinct_ids(random.Random(length), length)
        assert min(10, int(rate * length)) == k
        rnd = random.Random(2024)
        counts = [0] * k
        for _ in range(6000):
            counts[len(word_repetition(ids, rate, rnd)) - length] += 1
        assert all(c > 0 for c in counts)
        assert chisquare(counts).pvalue > 1e-3, counts


def test_max_dup_caps_the_count():
    ids = distinct_ids(random.Random(0), 40)
    gains = {len(word_repetition(ids, 0.5, random.Random(s), max_dup=3)) - 40 for s in range(300)}
    assert gains == {0, 1, 2}


def test_same_seed_same_output_and_seeds_differ():
    ids = distinct_ids(random.Random(0), 32)
    outs = [word_repetition(ids, 0.32, random.Random(s)) for s in range(20)]
    assert outs == [word_repetition(ids, 0.32, random.Random(s)) for s in range(20)]
    assert len({tuple(o) for o in outs}) > 5


def test_default_generator_is_pythons_global_one():
    ids = distinct_ids(random.Random(0), 32)
    random.seed(11)
    first = word_repetition(ids)
    random.seed(11)
    assert official_bpe(ids, 0.32, random) == first


def test_zero_rate_returns_an_unchanged_copy_and_draws_nothing():
    ids = distinct_ids(random.Random(0), 32)
    rnd = random.Random(3)
    state = rnd.getstate()
    out = word_repetition(ids, 0.0, rnd)
    assert out == ids and out is not ids
    assert rnd.getstate() == state


def test_input_is_not_modified():
    ids = distinct_ids(random.Random(0), 32)
    before = list(ids)
    word_repetition(ids, 0.5, random.Random(0))
    assert ids == before


# ---------------------------------------------------------------------------- repeat_batch
def test_repeat_batch_is_one_generator_over_the_batch():
    batch = [ids for _, ids, _ in cases(50, seed=8)]
    rnd = random.Random(42)
    want = [official_bpe(ids, 0.32, rnd) for ids in batch]
    assert repeat_batch(batch, 0.32, seed=42) == want
    assert repeat_batch(batch, 0.32, seed=42) == want  # deterministic
    assert repeat_batch(batch, 0.32, seed=43) != want


def test_repeat_batch_passes_special_ids():
    batch = [[CLS, 5, 6, 7, 8, 9, 10, 11, SEP] + [PAD] * 6 for _ in range(40)]
    for ids, out in zip(batch, repeat_batch(batch, 0.9, seed=0, special_ids={PAD})):
        assert out.count(PAD) == 6
        assert multiplicities(ids, out) is not None


# ---------------------------------------------------------------------------- word rule
SENTENCES = [
    "a",
    "two words",
    "the cat sat on the mat .",
    "ESimCSE repeats a few words so that the positive pair differs in length",
    " ".join(f"w{i}" for i in range(40)),
    "a man is playing a guitar on a stage in front of a crowd of people .",
]


def test_words_match_official_snippet_exactly():
    for case in range(400):
        sentence = SENTENCES[case % len(SENTENCES)]
        rate = RATES[case % len(RATES)]
        got = word_repetition_words(sentence, rate, random.Random(case))
        assert got == official_word(sentence, rate, random.Random(case)), (sentence, rate)


def test_words_properties():
    for case in range(400):
        sentence = SENTENCES[case % len(SENTENCES)]
        words = sentence.split()
        n, rate = len(words), RATES[case % len(RATES)]
        out = word_repetition_words(sentence, rate, random.Random(case)).split(" ")
        mult = multiplicities(words, out)
        assert mult is not None
        assert mult[-1] == 1  # positions 0 .. n-2 only
        assert sum(mult) - n < min(10, n, max(2, int(rate * n)))


def test_words_single_word_and_whitespace_normalisation():
    assert word_repetition_words("hello", 0.9, random.Random(0)) == "hello"
    assert word_repetition_words("  the   cat\tsat ", 0.0) == "the cat sat"
    out = word_repetition_words("  the   cat\tsat ", 0.5, random.Random(1))
    assert multiplicities(["the", "cat", "sat"], out.split(" ")) is not None


def test_words_zero_rate_is_off():
    rnd = random.Random(0)
    state = rnd.getstate()
    assert word_repetition_words("the cat sat on the mat .", 0.0, rnd) == "the cat sat on the mat ."
    assert rnd.getstate() == state


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("rate", [-0.1, 1.01, float("nan"), float("inf"), "0.3", None, True])
def test_bad_dup_rate(rate):
    with pytest.raises(ValueError, match="dup_rate"):
        word_repetition([CLS, 5, SEP], rate, random.Random(0))
    with pytest.raises(ValueError, match="dup_rate"):
        word_repetition_words("a b c", rate, random.Random(0))
    with pytest.raises(ValueError, match="dup_rate"):
        repeat_batch([[CLS, 5, SEP]], rate, seed=0)


@pytest.mark.parametrize("max_dup", [0, -3, 2.5])
def test_bad_max_dup(max_dup):
    with pytest.raises(ValueError, match="max_dup"):
        word_repetition([CLS, 5, SEP], 0.3, random.Random(0), max_dup=max_dup)
    with pytest.raises(ValueError, match="max_dup"):
        word_repetition_words("a b c", 0.3, random.Random(0), max_dup=max_dup)


def test_empty_inputs():
    with pytest.raises(ValueError, match="input_ids is empty"):
        word_repetition([], 0.3, random.Random(0))
    for bad in ("", "   \t\n"):
        with pytest.raises(ValueError, match="sentence"):
            word_repetition_words(bad, 0.3, random.Random(0))
    with pytest.raises(ValueError, match=r"batch_ids\[2\] is empty"):
        repeat_batch([[CLS, SEP], [CLS, 5, SEP], [], [CLS, SEP]], 0.3, seed=0)


# ----------------------------------------------------------------------------- mask_tokens (BERT 80/10/10)
@pytest.fixture(scope="module")
def tiny_tokenizer():
    from cselab.encoders import TINY_VOCAB, _wordpiece_tokenizer

    return _wordpiece_tokenizer(TINY_VOCAB)


def _batch(tok, n=64):
    from cselab.data import read_toy_corpus

    enc = tok(read_toy_corpus()[0][:n], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_mask_tokens_never_touches_specials_or_padding_and_labels_the_rest(tiny_tokenizer):
    from cselab.augment import mask_tokens

    ids, mask = _batch(tiny_tokenizer)
    masked, labels = mask_tokens(ids, tiny_tokenizer, 0.5, attention_mask=mask,
                                 generator=torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor(tiny_tokenizer.all_special_ids)) | (mask == 0)
    assert torch.equal(masked[special], ids[special]) and (labels[special] == -100).all()
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])  # only selected positions change
    assert ids.tolist() == _batch(tiny_tokenizer)[0].tolist()  # the input is not modified


def test_mask_tokens_proportions(tiny_tokenizer):
    from cselab.augment import mask_tokens

    ids, mask = _batch(tiny_tokenizer, 1024)
    ids, mask = ids.repeat(4, 1), mask.repeat(4, 1)
    masked, labels = mask_tokens(ids, tiny_tokenizer, 0.3, attention_mask=mask,
                                 generator=torch.Generator().manual_seed(1))
    eligible = ~(torch.isin(ids, torch.tensor(tiny_tokenizer.all_special_ids)) | (mask == 0))
    selected = labels != -100
    n = int(selected.sum())
    assert abs(n / int(eligible.sum()) - 0.3) < 0.01  # ~40k eligible tokens: 0.01 is > 4 sigma
    as_mask = int((masked[selected] == tiny_tokenizer.mask_token_id).sum())
    unchanged = int((masked[selected] == ids[selected]).sum())
    assert abs(as_mask / n - 0.8) < 0.02
    assert abs(unchanged / n - 0.1) < 0.02  # (a random id equal to the original is rare: 1/8000)


def test_mask_tokens_is_reproducible_and_validates(tiny_tokenizer):
    from cselab.augment import mask_tokens

    ids, mask = _batch(tiny_tokenizer, 8)
    a = mask_tokens(ids, tiny_tokenizer, 0.3, mask, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, tiny_tokenizer, 0.3, mask, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="probability"):
            mask_tokens(ids, tiny_tokenizer, bad)
