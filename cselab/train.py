"""One plain PyTorch training loop for every method (SimCSE's HF-Trainer settings, reference §1).

- AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0), linear decay to 0 without warm-up,
  gradient clipping at 1.0, seed 42;
- autocast only on CUDA (bf16 when supported, else fp16 with a gradient scaler);
- every ``eval_steps``: Spearman on STS-B dev (SimCSE's model selection) or on the shipped
  pairs, and the best model kept in ``OUTPUT/best`` (a sentence-transformers directory that
  :meth:`cselab.SentenceEncoder.from_pretrained` loads too);
- every ``save_steps``: a resumable checkpoint (:mod:`cselab.checkpoints`); ``resume=True``
  continues from the newest one and gives the same result as an uninterrupted run on CPU;
- metrics written as they come to ``OUTPUT/metrics.jsonl`` and ``OUTPUT/metrics.csv``;
- a NaN or infinite loss stops the run with :class:`NonFiniteLossError` naming the first bad step.
  Each step only records ``torch.isfinite(loss)`` on the device (no host sync); the flags are read
  at the next logging, evaluation or checkpoint step (which sync anyway), *before* anything is
  written, and a checkpoint is written only if every parameter is finite. So the newest checkpoint
  is always a good one, and the error names it;
- under ``torchrun``: each process takes its slice of the global batch, embeddings are
  gathered with gradient (:mod:`cselab.distributed`) and gradients averaged, as DDP does.

A method supplies ``columns``, ``loss(encoder, rows)`` and ``eval_encoder(encoder)``
(:mod:`cselab.methods`), and optionally ``read_training_file(path)`` (its own reader: a list
of rows, column -> text), ``tokenize_kwargs``, ``keep_columns``, ``prepare_dataset(dataset,
tokenizer)`` (run once after tokenisation) and ``on_epoch_start(epoch)``; nothing here is
specific to one method.
A method's state (a momentum encoder, a queue) lives in its parameters and buffers, so
checkpoints carry it; parameters with ``requires_grad=False`` are not optimised.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import data as D
from . import distributed as dist_utils
from .checkpoints import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .configs import TrainConfig, config_from_dict
from .encoders import SentenceEncoder
from .evaluate import spearman_on_pairs
from .methods import build_method
from .methods.base import hook
from .profiles import STEP_CAP_ENV, step_cap
from .utils import quiet_datasets, seed_everything

CONFIG_FILE = "train_config.json"
RESULT_FILE = "result.json"
IDENTITY_FILE = "run_identity.json"  # run_or_load: what else a run depends on


@dataclass
class TrainResult:
    """What a run produced. Scores are Spearman x 100 on the evaluation pairs."""

    output_dir: Path
    best_dir: Path
    initial_score: float
    best_score: float
    best_step: int
    final_score: float
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------ data
TEXT_PREFIX = "text:"  # train_file "text:unlabeled" / "text:nli": real sentences when present, else shipped


def resolve_train_file(train_file: str, data_dir=None, download: bool = True) -> Path:
    """A registry name (``wiki1m``, ``nli``) -> its file under the data root; ``text:KIND`` -> real text of
    that kind when the data root has it, else the shipped stand-in (:func:`cselab.data.training_text`);
    else a path."""
    if train_file.startswith(TEXT_PREFIX):
        return D.training_text(train_file[len(TEXT_PREFIX):], data_dir)[0]
    if train_file in D.REGISTRY:
        root = D.data_root(data_dir, must_exist=False)
        target = root / D.REGISTRY[train_file].target
        if not target.exists():
            if not download:
                raise D.DataNotFoundError(f"{target} is missing; run `cselab download {train_file}`.")
            D.download(train_file, root)
        return target
    path = Path(train_file).expanduser()
    if not path.is_file():
        raise D.DataNotFoundError(f"Training file {path} does not exist (train_file={train_file!r}); pass a "
                                  f"path or one of {sorted(D.REGISTRY)}.")
    return path


def load_training_data(config: TrainConfig, tokenizer, columns: tuple[str, ...], data_dir=None,
                       tokenize_kwargs: dict | None = None, keep_columns: tuple[str, ...] = (),
                       reader: Callable[[Path], list[dict]] | None = None):
    """Tokenise the training file once with ``datasets`` (cached ``map``); returns a Dataset.

    ``.txt``: one sentence per line (column ``sent0``); ``.csv``: ``sent0,sent1[,hard_neg]``;
    ``.tsv``: tab-separated with a ``sentence`` column (the course's toy corpus); ``.jsonl``:
    documents ``{"title", "text"}``. A method's ``reader`` (``read_training_file``, e.g. for
    graded groups) replaces these rules: it returns the validated rows, column -> text (None = empty). Each
    needed column becomes a column of token-id lists, by default truncated to ``max_length``; a
    method's ``tokenize_kwargs`` replace that (DeCLUTR tokenises whole documents). ``keep_columns``
    stay as they are (e.g. titles).
    Every file is checked first (UTF-8; for ``.csv``/``.tsv`` as many fields per row as the header,
    :func:`cselab.data.check_training_table`; ``.jsonl`` objects with ``text``): errors name the file
    and line. A BOM and CRLF line ends are accepted; empty lines of a ``.txt`` are skipped with a warning.
    """
    import datasets

    path = resolve_train_file(config.train_file, data_dir)
    suffix = path.suffix.lower()
    if reader is not None:  # checked rows, errors name file:line; kept in memory (no datasets cache)
        ds = datasets.Dataset.from_list(reader(path))
    elif suffix == ".txt":
        lines = D.read_lines(path)  # UTF-8 checked first: errors name the file and line
        blank = sum(not line.strip() for line in lines)
        # utf-8-sig: a BOM is not part of the first sentence; CRLF line ends are split like LF
        ds = datasets.load_dataset("text", data_files=str(path), split="train", encoding="utf-8-sig")
        ds = ds.rename_column("text", "sent0")
        if blank:
            warnings.warn(f"{path}: skipped {blank} empty line(s).", stacklevel=2)
            ds = ds.filter(lambda batch: [bool(t.strip()) for t in batch["sent0"]], batched=True,
                           desc="Dropping empty lines")
    elif suffix in (".csv", ".tsv"):
        D.check_training_table(path, "\t" if suffix == ".tsv" else ",")  # errors name the file and line
        tsv = {"delimiter": "\t", "quoting": 3} if suffix == ".tsv" else {}  # 3 = csv.QUOTE_NONE: quotes are text
        ds = datasets.load_dataset("csv", data_files=str(path), split="train", encoding="utf-8-sig", **tsv)
        if "sentence" in ds.column_names and "sent0" not in ds.column_names:
            ds = ds.rename_column("sentence", "sent0")
    elif suffix == ".jsonl":
        D.read_documents(path)  # checks every line first: errors name the file and line
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
    else:
        raise ValueError(f"{path}: unsupported training file type {suffix!r}; use .txt, .csv, .tsv or .jsonl.")
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(f"{path}: method {config.method!r} needs columns {list(columns)}, the file has "
                         f"{ds.column_names} (missing {missing}).")
    if config.max_train_samples is not None:
        ds = ds.select(range(min(config.max_train_samples, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"{path}: no training examples.")

    options = tokenize_kwargs if tokenize_kwargs is not None else {"truncation": True, "max_length": config.max_length}

    def tokenize(batch):
        # SimCSE replaces missing fields by " " (train.py:prepare_features)
        return {c: tokenizer([x if x is not None else " " for x in batch[c]], **options)["input_ids"] for c in columns}

    drop = [c for c in ds.column_names if c not in keep_columns or c in columns]
    return ds.map(tokenize, batched=True, remove_columns=drop, desc="Tokenising")


def method_dataset(config: TrainConfig, encoder: SentenceEncoder, method: nn.Module, data_dir=None,
                   progress: bool = False):
    """The training data exactly as ``train`` feeds it to ``method``: read with the method's reader and
    tokenisation options, then ``method.prepare_dataset`` (ESimCSE's word repetition, drawn once as the
    official code does; DeCLUTR's length check; NGCSE's levels). ``dataset[i:j]`` is then a batch of rows.
    ``progress``: show ``datasets``' bars (reading, tokenising); off, nothing is printed."""
    with contextlib.nullcontext() if progress else quiet_datasets():
        dataset = load_training_data(config, encoder.tokenizer, method.columns, data_dir,
                                     hook(method, "tokenize_kwargs"), hook(method, "keep_columns") or (),
                                     hook(method, "read_training_file"))
        return hook(method, "prepare_dataset")(dataset, encoder.tokenizer)


def row_lengths(dataset, columns: tuple[str, ...]) -> list[int]:
    """Token count of each training row, summed over the method's token-id columns."""
    lengths = [0] * len(dataset)
    for column in columns:
        for i, ids in enumerate(dataset[column]):
            lengths[i] += len(ids) if ids is not None else 0
    return lengths


def length_bucketed_order(order: list[int], lengths: list[int], batch_size: int, pool_batches: int,
                          seed: int) -> list[int]:
    """Reorder a shuffled ``order`` so that each batch holds rows of similar length.

    The order is cut into pools of ``pool_batches * batch_size`` rows; each pool is sorted by
    ``lengths`` (stable), cut into batches, and its full batches are shuffled (generator seeded with
    ``seed``). A last incomplete batch stays last, so batch boundaries are those of ``order``. Every
    row appears exactly once; ``pool_batches=1`` keeps each batch's rows (only their order changes).
    Larger pools pad less but make batches more alike in length, i.e. in-batch negatives of similar
    length -- a different training signal from the paper's random batches.
    """
    if pool_batches < 1 or batch_size < 1:
        raise ValueError(f"pool_batches and batch_size must be >= 1, got {pool_batches} and {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    pool_size = pool_batches * batch_size
    out: list[int] = []
    for start in range(0, len(order), pool_size):
        pool = sorted(order[start:start + pool_size], key=lambda i: lengths[i])
        batches = [pool[j:j + batch_size] for j in range(0, len(pool), batch_size)]
        tail = [batches.pop()] if len(batches[-1]) < batch_size else []
        for k in torch.randperm(len(batches), generator=generator).tolist():
            out.extend(batches[k])
        for batch in tail:
            out.extend(batch)
    return out


def evaluation_pairs(config: TrainConfig, data_dir=None) -> D.ScoredPairs:
    """The pairs of model selection: STS-B dev, the shipped pairs, or (``auto``) STS-B dev when the data root has it."""
    if config.eval_data == "auto":
        try:
            pairs = D.read_stsb("dev", data_dir)
        except D.DataNotFoundError:
            pairs = D.read_scored_pairs()
    else:
        pairs = D.read_stsb("dev", data_dir) if config.eval_data == "stsb-dev" else D.read_scored_pairs()
    return pairs.subset(config.eval_max_pairs) if config.eval_max_pairs else pairs


# ------------------------------------------------------------------ helpers
def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but CUDA is not available; use --set device=cpu.")
        index = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", index)
    return torch.device("cpu")


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.precision == "fp32":
        return None
    if config.precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if config.precision == "bf16":
        raise RuntimeError("precision='bf16' but this GPU does not support bfloat16.")
    return torch.float16


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout probability of the encoder (SimCSE's only augmentation)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(getattr(module, "dropout_prob", None), float):
            module.dropout_prob = p  # SDPA attention in transformers 4.4x reads a plain float
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p  # Llama-style attention reads a plain float too
    config = getattr(model, "config", None)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout"):
        if hasattr(config, key):
            setattr(config, key, p)  # so a saved model records the training value


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (BERT's recipe, DeCLUTR's
    ``parameter_groups``). Parameters with ``requires_grad=False`` (a momentum encoder) are left out."""
    decay, no_decay, everything = [], [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        norm = "layernorm" in name.lower() or "layer_norm" in name.lower() or "ln_" in name.lower()
        everything.append(p)
        (no_decay if name.endswith("bias") or (norm and p.dim() == 1) else decay).append(p)
    if weight_decay == 0:  # one group in module order: the optimizer state layout of older checkpoints
        return [{"params": everything, "weight_decay": 0.0}]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_multiplier(schedule: str, total: int, cut_frac: float = 0.1, ratio: float = 32.0) -> Callable[[int], float]:
    """Learning-rate factor of step ``s`` (0-based) for ``total`` steps.

    ``linear``: ``(total - s) / total`` (HF Trainer without warm-up). ``slanted_triangular``
    (Howard & Ruder 2018, Eq. 3; AllenNLP's defaults): a linear rise over the first
    ``cut = floor(total * cut_frac)`` steps, then a linear decay, between ``1/ratio`` and 1.
    """
    if schedule == "linear":
        return lambda s: max(0.0, (total - s) / total)
    if schedule != "slanted_triangular":
        raise ValueError(f"Unknown lr_schedule {schedule!r}; choose 'linear' or 'slanted_triangular'.")
    cut = max(1, int(total * cut_frac))

    def factor(s: int) -> float:
        p = s / cut if s < cut else 1 - (s - cut) / max(1, total - cut)
        return (1 + max(0.0, p) * (ratio - 1)) / ratio

    return factor


class NonFiniteLossError(FloatingPointError):
    """The training loss (or the weights) became NaN or infinite; the message names the step."""


def _raise_if_not_finite(flags: list[tuple[int, torch.Tensor]], modules: nn.Module, output_dir: Path,
                         config: TrainConfig, step: int, *, weights: bool) -> None:
    """Read the per-step ``isfinite(loss)`` flags (one host sync for all of them) and, before a
    checkpoint (``weights=True``), check every parameter too; raise naming the first bad step."""
    if flags:
        ok = torch.stack([f for _, f in flags]).cpu()
        bad = [s for (s, _), good in zip(flags, ok.tolist()) if not good]
        flags.clear()
    else:
        bad = []
    what = "loss"
    if not bad and weights:
        finite = torch.stack([torch.isfinite(p).all() for p in modules.parameters()]).all()
        if not bool(finite):
            bad, what = [step], "weights"
    if not bad:
        return
    ckpt = latest_checkpoint(output_dir)
    kept = (f"The last good checkpoint, {ckpt}, is intact: resume=True (--resume) continues from it."
            if ckpt is not None else "No checkpoint had been written yet.")
    raise NonFiniteLossError(
        f"Training {what} became NaN or infinite at step {bad[0]} (method {config.method!r}, "
        f"learning_rate {config.learning_rate}); stopped at step {step} without writing metrics or a checkpoint "
        f"for it. {kept} Lower learning_rate, use precision=fp32, or check the training data.")


class _Trainable(nn.Module):
    """Encoder weights + method head, one module for optimizer, checkpoints and clipping."""

    def __init__(self, encoder: SentenceEncoder, method: nn.Module):
        super().__init__()
        self.encoder_model = encoder.model
        self.method = method


def _write_metrics(output_dir: Path, history: list[dict]) -> None:
    with open(output_dir / "metrics.jsonl", "w", encoding="utf-8") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
    keys = ["step", "epoch", "loss", "learning_rate", "eval_score", "best_score", "seconds"]
    keys += sorted({k for row in history for k in row} - set(keys))  # extra_metrics columns
    with open(output_dir / "metrics.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _check_output_dir(output_dir: Path, config: TrainConfig, resume: bool) -> None:
    saved = output_dir / CONFIG_FILE
    if saved.is_file():
        previous = config_from_dict(json.loads(saved.read_text("utf-8")))
        if not resume:
            raise FileExistsError(f"{output_dir} already holds a training run; pass resume=True (--resume) to "
                                  "continue it, or choose another output directory. Nothing was overwritten.")
        if previous != config:
            diff = {k: (v, config.to_dict()[k]) for k, v in previous.to_dict().items() if config.to_dict()[k] != v}
            raise ValueError(f"{output_dir} holds a run with a different configuration {diff} (saved, now); "
                             "resume needs the same configuration.")
    # fail before any work if the folder cannot be written
    output_dir.mkdir(parents=True, exist_ok=True)
    probe = output_dir / ".write-test"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"ok" * 2048)  # 4 KiB and fsync: a full disk fails here, not at the first checkpoint
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"The disk is full: cannot write to the output directory {output_dir}. "
                                        "Free some space there or choose another output directory.") from None
        raise PermissionError(f"Cannot write to the output directory {output_dir}: {exc}") from None


# ------------------------------------------------------------------ the loop
@dataclass
class _Run:
    """The state of one training run: what :func:`train`'s small steps read and update."""

    config: TrainConfig
    output_dir: Path
    encoder: SentenceEncoder
    method: nn.Module
    modules: nn.Module  # encoder weights + method head: optimised, clipped and checkpointed together
    dataset: object  # the tokenised training rows (a datasets.Dataset)
    lengths: list[int] | None  # row lengths for length bucketing
    pairs: D.ScoredPairs  # model selection pairs
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype (None = fp32)
    steps_per_epoch: int
    total: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    extra_metrics: Callable[[SentenceEncoder], dict[str, float]] | None
    start_time: float
    rank: int = 0
    world: int = 1
    step: int = 0
    epoch: int = 0
    position: int = 0  # the next batch of the epoch
    history: list[dict] = field(default_factory=list)
    best_score: float = -math.inf
    best_step: int = 0
    initial_score: float | None = None
    running: torch.Tensor | float = 0.0  # the loss summed since the last log line (on the device)
    count: int = 0
    finite_flags: list = field(default_factory=list)  # (step, isfinite(loss)) since the last check

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.world


def _steps(n_rows: int, config: TrainConfig, world: int) -> tuple[int, int]:
    """(steps per epoch, total steps). Under torchrun the last incomplete global batch is dropped,
    so that every process gets a full slice."""
    global_batch = config.batch_size * world
    steps_per_epoch = n_rows // global_batch if world > 1 else math.ceil(n_rows / global_batch)
    if steps_per_epoch == 0:
        raise ValueError(f"{n_rows} training examples are fewer than one global batch of {global_batch}.")
    total = config.epochs * steps_per_epoch
    total = min(total, config.max_steps) if config.max_steps is not None else total
    cap = step_cap()  # test-only ($CSELAB_MAX_STEPS)
    if cap is not None and cap < total:
        print(f"${STEP_CAP_ENV}={cap}: stopping after {cap} of {total} steps (a test-only cap).")
        total = cap
    return steps_per_epoch, total


def _setup(config: TrainConfig, output_dir: Path, data_dir, encoder: SentenceEncoder | None,
           method: nn.Module | None, extra_metrics, progress: bool = False) -> _Run:
    """Seed, model, method head, data, evaluation pairs, optimizer and schedule (in the official order)."""
    start_time = time.perf_counter()
    rank, world = dist_utils.rank(), dist_utils.world_size()
    seed_everything(config.seed)
    device = _device(config)
    if encoder is None:
        encoder = SentenceEncoder.from_pretrained(config.model, pooling=config.train_pooling, seed=config.seed)
    encoder = encoder.to(device)
    set_dropout(encoder.model, config.dropout)
    method = (method if method is not None else build_method(config, encoder)).to(device)
    modules = _Trainable(encoder, method)
    dataset = method_dataset(config, encoder, method, data_dir, progress)
    lengths = row_lengths(dataset, method.columns) if config.length_bucketing else None
    encoder.pad_lengths = config.static_shapes  # () = pad each batch to its longest row
    if config.compile:  # in place: parameter names, state_dict and checkpoints stay those of the plain model
        static = bool(config.static_shapes)
        encoder.model.compile(dynamic=not static, **({"mode": config.compile_mode} if static else {}))
    pairs = evaluation_pairs(config, data_dir)
    if rank == 0:  # only once model and data loaded: a failed start must not claim the folder
        (output_dir / CONFIG_FILE).write_text(config.to_json(), "utf-8")
    steps_per_epoch, total = _steps(len(dataset), config, world)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(parameter_groups(modules, config.weight_decay), lr=config.learning_rate,
                                  betas=(0.9, 0.999), eps=config.adam_epsilon, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config.lr_schedule, total))
    dtype = _autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return _Run(config, output_dir, encoder, method, modules, dataset, lengths, pairs, device, dtype,
                steps_per_epoch, total, optimizer, scheduler, scaler, extra_metrics, start_time, rank, world,
                running=torch.zeros((), device=device))


def _evaluate(run: _Run) -> tuple[float, dict]:
    """Spearman of the method's evaluation encoder on the selection pairs, plus ``extra_metrics``."""
    eval_encoder = run.method.eval_encoder(run.encoder)
    score = spearman_on_pairs(eval_encoder, run.pairs, show_progress=False)
    extra = {}
    if run.extra_metrics is not None:
        extra = {k: float(v) for k, v in run.extra_metrics(eval_encoder).items()}
        clash = set(extra) & {"step", "epoch", "loss", "learning_rate", "eval_score", "best_score", "seconds"}
        if clash:
            raise ValueError(f"extra_metrics returned reserved metric names {sorted(clash)}; rename them.")
    run.modules.train()
    return score, extra


def _save_best(run: _Run) -> None:
    run.method.eval_encoder(run.encoder).save_sentence_transformer(run.output_dir / "best")


def _restore_or_start(run: _Run, resume: bool) -> bool:
    """Continue from the newest checkpoint, else score step 0 (the untrained model is the first "best").
    Returns whether a checkpoint was restored."""
    ckpt = latest_checkpoint(run.output_dir) if resume else None
    if ckpt is not None:
        meta = load_checkpoint(ckpt, modules=run.modules, optimizer=run.optimizer, scheduler=run.scheduler)
        run.step, run.epoch, run.position = meta["step"], meta["epoch"], meta["position"]
        extra = meta["extra"]
        run.history, run.best_score, run.best_step = extra["history"], extra["best_score"], extra["best_step"]
        run.initial_score = extra["initial_score"]
        # the loss average since the last log line continues across a resume
        run.running = torch.tensor(extra.get("running_loss", 0.0), device=run.device)
        run.count = extra.get("running_count", 0)
        if run.rank == 0:
            _write_metrics(run.output_dir, run.history)
        return True
    if resume and run.rank == 0:
        print(f"No checkpoint in {run.output_dir}: starting from scratch.")
    score, extra = _evaluate(run)
    run.initial_score = run.best_score = score
    run.history.append({"step": 0, "epoch": 0, "eval_score": score, "best_score": score, "seconds": 0.0, **extra})
    if run.rank == 0:
        _save_best(run)
        _write_metrics(run.output_dir, run.history)
    return False


def _epoch_batches(run: _Run) -> list[list[int]]:
    """The epoch's batches of row indices: a function of (seed, epoch) alone, so a resume finds the same ones."""
    config, epoch = run.config, run.epoch
    order = torch.randperm(len(run.dataset), generator=torch.Generator().manual_seed(config.seed + epoch)).tolist()
    if config.length_bucketing:
        order = length_bucketed_order(order, run.lengths, run.global_batch, config.length_bucketing,
                                      config.seed + epoch)
    size = run.global_batch
    batches = [order[i:i + size] for i in range(0, run.steps_per_epoch * size, size)]
    batches = hook(run.method, "compose_batches")(batches, run.dataset)  # e.g. hold some rows back
    if run.position == 0:
        hook(run.method, "on_epoch_start")(epoch)  # e.g. a queue emptied every epoch
    return batches


def _train_step(run: _Run, batch: list[int]) -> torch.Tensor:
    """Forward, backward, (all-reduce), clip, optimizer and scheduler step on one batch; returns the loss."""
    config, world = run.config, run.world
    rows = run.dataset[batch if world == 1 else batch[run.rank * config.batch_size:(run.rank + 1) * config.batch_size]]
    with torch.autocast(run.device.type, dtype=run.dtype, enabled=run.dtype is not None):
        loss = run.method.loss(run.encoder, rows)
    if config.scale_fix:
        loss = hook(run.method, "scale_for_world")(loss, world)
    (run.scaler.scale(loss) if run.scaler else loss).backward()
    if world > 1:
        for p in run.modules.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= world  # DDP's average: the 1/N scale of reference §4
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.modules.parameters(), config.grad_clip)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.running = run.running + loss.detach()  # no host sync here: .item() only when logging
    run.count += 1
    run.step, run.position = run.step + 1, run.position + 1
    run.finite_flags.append((run.step, torch.isfinite(loss.detach())))  # read at the next check, no sync here
    return loss


def _log_evaluate_save(run: _Run, bar) -> None:
    """After a step: log the mean loss, evaluate (keeping the best model) and checkpoint when due."""
    config, step = run.config, run.step
    logs = step % config.log_steps == 0 or step == run.total
    evals = step % config.eval_steps == 0 or step == run.total
    saves = (step % config.save_steps == 0 or step == run.total) and run.rank == 0
    if not (logs or evals or saves):
        return
    _raise_if_not_finite(run.finite_flags, run.modules, run.output_dir, config, step, weights=saves)
    record = {}
    if logs:
        record.update(loss=(run.running / run.count).item(), learning_rate=run.scheduler.get_last_lr()[0])
        run.running, run.count = torch.zeros((), device=run.device), 0
    if evals:
        score, extra = _evaluate(run)
        record.update(eval_score=score, **extra)
        if score > run.best_score and run.rank == 0:
            run.best_score, run.best_step = score, step
            _save_best(run)
        record["best_score"] = run.best_score
        bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", dev=f"{score:.2f}")
    if record:
        record.update(step=step, epoch=run.epoch, seconds=round(time.perf_counter() - run.start_time, 3))
        run.history.append(record)
        if run.rank == 0:
            _write_metrics(run.output_dir, run.history)
    if saves:
        running = run.running.item() if torch.is_tensor(run.running) else float(run.running)
        save_checkpoint(run.output_dir, modules=run.modules, optimizer=run.optimizer, scheduler=run.scheduler,
                        step=step, epoch=run.epoch, position=run.position,
                        extra={"history": run.history, "best_score": run.best_score, "best_step": run.best_step,
                               "initial_score": run.initial_score, "config": config.to_dict(),
                               "running_loss": running, "running_count": run.count})


def _finish(run: _Run) -> TrainResult:
    """The run's result, also written to ``OUTPUT/result.json``."""
    final_score = next(r["eval_score"] for r in reversed(run.history) if "eval_score" in r)
    result = TrainResult(run.output_dir, run.output_dir / "best", run.initial_score, run.best_score, run.best_step,
                         final_score, run.step, time.perf_counter() - run.start_time, run.history)
    if run.rank == 0:
        summary = {k: v for k, v in result.__dict__.items() if k != "history"}
        summary.update(output_dir=str(run.output_dir), best_dir=str(result.best_dir), config=run.config.to_dict())
        (run.output_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2), "utf-8")
    return result


def train(config: TrainConfig, output_dir: str | os.PathLike, *, resume: bool = False, data_dir=None,
          encoder: SentenceEncoder | None = None, method: nn.Module | None = None,
          progress: bool | None = None, stop_after: int | None = None,
          extra_metrics: Callable[[SentenceEncoder], dict[str, float]] | None = None) -> TrainResult:
    """Train ``config.method`` and keep the best model (by the evaluation score) in ``OUTPUT/best``.

    Args:
        config: the run's configuration (see :mod:`cselab.configs`).
        output_dir: checkpoints, metrics and the best model go here.
        resume: continue from the newest checkpoint in ``output_dir``.
        data_dir: data root for registry files and STS-B dev.
        encoder: start from this encoder instead of loading ``config.model``.
        method: a method module (``columns``, ``loss``, ``eval_encoder``) to use instead of the one
            ``config.method`` names, e.g. an ablation; it is moved to the training device.
        progress: tqdm bar (default: on when attached to a terminal or notebook, off in CI).
        stop_after: stop (as if interrupted) after this many steps in this call; for tests and demos.
        extra_metrics: called with the evaluation encoder at every evaluation (step 0 included);
            the numbers it returns join that step's row of the metrics, e.g.
            :func:`cselab.evaluate.alignment_uniformity` for SimCSE's Figure 2 trajectory.
    """
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    _check_output_dir(output_dir, config, resume)
    show = progress if progress is not None else (dist_utils.rank() == 0 and os.environ.get("CI") is None)
    run = _setup(config, output_dir, data_dir, encoder, method, extra_metrics, show)
    _restore_or_start(run, resume)
    bar = tqdm(total=run.total, initial=run.step, disable=not show, desc=config.method, unit="step")
    steps_this_call = 0
    run.modules.train()
    while run.step < run.total:
        if run.position >= run.steps_per_epoch:
            run.epoch, run.position = run.epoch + 1, 0
        batches = _epoch_batches(run)
        while run.position < run.steps_per_epoch and run.step < run.total:
            _train_step(run, batches[run.position])
            bar.update(1)
            _log_evaluate_save(run, bar)
            steps_this_call += 1
            if stop_after is not None and steps_this_call >= stop_after:
                bar.close()
                raise KeyboardInterrupt(f"stopped after {steps_this_call} steps (stop_after)")
    bar.close()
    return _finish(run)


def load_or_train(config: TrainConfig, output_dir: str | os.PathLike, **kwargs) -> SentenceEncoder:
    """Lecture mode: the best model of a finished run of the same configuration, else train (or resume)."""
    output_dir = Path(output_dir)
    saved, finished = output_dir / CONFIG_FILE, output_dir / RESULT_FILE
    if saved.is_file() and finished.is_file():
        if config_from_dict(json.loads(saved.read_text("utf-8"))) == config:
            return SentenceEncoder.from_pretrained(output_dir / "best")
    train(config, output_dir, resume=saved.is_file(), **kwargs)
    return SentenceEncoder.from_pretrained(output_dir / "best")


def run_or_load(config: TrainConfig, output_dir: str | os.PathLike, *, replace_stale: bool = False,
                identity: dict | None = None, label: str | None = None, **kwargs) -> TrainResult:
    """Lecture mode with a one-line report: a finished run of ``config`` is loaded, else trained (or resumed).

    ``identity`` (JSON values) names what else the run depends on, e.g. the size of an extra
    evaluation set; it is saved next to the configuration. A folder that holds a run of another
    configuration or identity is an error, or, with ``replace_stale`` (a chapter's own folder
    under ``build/``), removed first. ``label`` names the run in the report; ``kwargs`` go to :func:`train`.
    """
    output_dir, identity = Path(output_dir), dict(identity or {})
    saved, finished, ident_file = output_dir / CONFIG_FILE, output_dir / RESULT_FILE, output_dir / IDENTITY_FILE
    label = label or output_dir.name
    if saved.is_file():
        previous = json.loads(ident_file.read_text("utf-8")) if ident_file.is_file() else {}
        if config_from_dict(json.loads(saved.read_text("utf-8"))) != config or previous != identity:
            if not replace_stale:
                raise ValueError(f"{output_dir} holds a run of another configuration: choose an empty folder.")
            print(f"{label}: {output_dir} held a run of another configuration; removed it")
            shutil.rmtree(output_dir)
    if finished.is_file():
        summary = json.loads(finished.read_text("utf-8"))
        history = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text("utf-8").splitlines()]
        result = TrainResult(output_dir, output_dir / "best", summary["initial_score"], summary["best_score"],
                             summary["best_step"], summary["final_score"], summary["steps"], summary["seconds"],
                             history)
        print(f"{label}: loaded the finished run ({result.steps} steps) from {output_dir}")
        return result
    resume = saved.is_file()
    output_dir.mkdir(parents=True, exist_ok=True)
    ident_file.write_text(json.dumps(identity, sort_keys=True), "utf-8")
    result = train(config, output_dir, resume=resume, **kwargs)
    print(f"{label}: trained {result.steps} steps in {result.seconds:.0f} s")
    return result


__all__ = ["CheckpointError", "NonFiniteLossError", "TrainResult", "length_bucketed_order", "load_or_train",
           "load_training_data", "method_dataset", "row_lengths", "run_or_load", "train"]
