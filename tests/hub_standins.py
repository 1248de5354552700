"""Stand-in checkpoints under the real hub ids, in a Hugging Face cache that works offline.

The ``laptop`` and ``full`` profiles load hub models (``bert-base-uncased``, ``roberta-base``, ...) that
CI cannot download. :func:`build_hub_cache` writes, for every hub id that :data:`cselab.configs.PRESETS`
and :data:`cselab.profiles.PROFILES` name, a tiny randomly initialised checkpoint of the right
architecture into ``HF_HOME/hub`` in the hub's own layout::

    models--org--name/blobs/<sha256>
    models--org--name/refs/main                      (the commit hash)
    models--org--name/snapshots/<commit>/config.json -> ../../blobs/<sha256>   (and the other files)

With ``HF_HOME`` pointing there and ``HF_HUB_OFFLINE=1`` (:func:`offline_env`), transformers and
huggingface_hub load the stand-ins exactly as they would load the real models from a warm cache.

Stand-ins (2 layers, hidden 32) are saved the way the hub ships the real models, so both
``AutoModel`` (encoders) and ``AutoModelForMaskedLM`` (DiffCSE's generator, DeCLUTR's MLM head) load
them without missing weights:

- ``bert`` ids: ``BertForPreTraining`` weights (encoder + pooler + MLM head), WordPiece tokenizer over the
  course vocabulary ``data/tiny_vocab.txt``;
- ``roberta`` ids (``roberta-base``, ``distilroberta-base``): ``RobertaForMaskedLM`` (no pooler weights,
  like the hub's ``roberta-base`` in recent transformers), a tiny byte-level BPE trained offline on the
  shipped toy corpus, saved as ``tokenizer.json`` + ``vocab.json`` + ``merges.txt``;
- ``distilbert`` ids: ``DistilBertForMaskedLM`` with the same WordPiece vocabulary as the BERT stand-ins
  (DiffCSE needs generator and encoder to share it).

Run as a script, it executes cselab commands in one process against such a cache (the environment
must be set before transformers is imported, hence a subprocess): see :func:`run_cli_batch`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COURSE_DATA = REPO / "data"
STANDIN_COMMIT = hashlib.sha1(b"cselab hub stand-in").hexdigest()  # any 40-hex revision works
TINY = dict(hidden=32, layers=2, heads=2, ffn=64)
OFFLINE_DATA = {  # registry train_file -> a shipped file of the same kind (the hub datasets are unreachable)
    "wiki1m": COURSE_DATA / "toy_corpus.tsv",
    "nli": COURSE_DATA / "toy_nli.csv",
    "openwebtext": COURSE_DATA / "toy_docs.jsonl",
    "wikitext-docs": COURSE_DATA / "toy_docs.jsonl",
    "ngcse-wiki-sts": COURSE_DATA / "llm_generated" / "sts.jsonl",
    "ngcse-nli-sts": COURSE_DATA / "llm_generated" / "nli.jsonl",
}


# ------------------------------------------------------------------ which ids
def is_hub_id(name: str) -> bool:
    """``org/name`` or ``name``, not a cselab preset and not a path."""
    return not (name.startswith(("cselab/", ".", "/", "~")) or name.count("/") > 1 or os.path.isdir(name))


def family(repo_id: str) -> str:
    """The architecture a stand-in for ``repo_id`` needs, from the id (the hub's naming)."""
    name = repo_id.lower().split("/")[-1]
    for key in ("roberta", "distilbert", "bert"):  # order matters: distilroberta, distilbert before bert
        if key in name:
            return key
    raise ValueError(f"No stand-in architecture known for hub id {repo_id!r}: add its family to "
                     "tests/hub_standins.py:family().")


def hub_ids() -> dict[str, set[str]]:
    """Every hub id the presets and profiles load -> what loads it (``preset:NAME``/``generator:NAME``/``profile:NAME``)."""
    from cselab.configs import PRESETS
    from cselab.profiles import PROFILES

    users: dict[str, set[str]] = {}
    for name, config in PRESETS.items():
        if is_hub_id(config.model):
            users.setdefault(config.model, set()).add(f"preset:{name}")
        if config.method == "diffcse" and is_hub_id(config.generator):
            users.setdefault(config.generator, set()).add(f"generator:{name}")
    for name, profile in PROFILES.items():
        if profile.needs_hub and is_hub_id(profile.model):
            users.setdefault(profile.model, set()).add(f"profile:{name}")
    return users


def paper_presets() -> list[str]:
    """Preset names of the papers' settings: every preset that is not a ``-ci``/``-laptop``/``-tiny`` variant."""
    from cselab.configs import PRESETS

    return [n for n in PRESETS if not n.endswith(("-ci", "-laptop", "-tiny"))]


def laptop_presets() -> list[str]:
    """The ``laptop`` profile's presets (a small pretrained BERT from the hub)."""
    from cselab.configs import PRESETS

    return [n for n in PRESETS if n.endswith("-laptop")]


# ------------------------------------------------------------------ stand-in files
def _corpus_lines(limit: int = 400) -> list[str]:
    with open(COURSE_DATA / "toy_corpus.tsv", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")][:limit]


def _bpe_tokenizer(folder: Path) -> None:
    """A tiny byte-level BPE (RoBERTa's special tokens and post-processor), trained offline."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus_lines(), vocab_size=600, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    bpe.save_model(str(folder))  # vocab.json + merges.txt, as the hub's roberta-base has them
    RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, model_max_length=512).save_pretrained(folder)


CHAT_LM = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the hub id of the chapters' LLM (a LlamaForCausalLM)
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_chat_standin(folder: Path, seed: int = 0) -> Path:
    """A tiny random ``LlamaForCausalLM`` with SmolLM2's special tokens and ChatML chat template.

    What it writes is noise: it proves the chapters' LLM code paths (chat template, batched generation,
    decoder pooling) run on a hub checkpoint, not what a real model answers."""
    import torch
    import transformers as T
    from tokenizers import ByteLevelBPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus_lines(), vocab_size=600, min_frequency=1, show_progress=False,
                            special_tokens=specials)
    tokenizer = T.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|im_start|>",
                                          eos_token="<|im_end|>", unk_token="<|endoftext|>",
                                          pad_token="<|im_end|>", model_max_length=2048)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = T.LlamaConfig(vocab_size=len(tokenizer), hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
                           num_attention_heads=TINY["heads"], num_key_value_heads=TINY["heads"],
                           intermediate_size=TINY["ffn"], max_position_embeddings=2048, tie_word_embeddings=True,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id, architectures=["LlamaForCausalLM"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        T.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _wordpiece_tokenizer(folder: Path) -> None:
    from cselab.encoders import TINY_VOCAB, _wordpiece_tokenizer

    tokenizer = _wordpiece_tokenizer(TINY_VOCAB)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    shutil.copyfile(TINY_VOCAB, folder / "vocab.txt")  # the hub's BERT repos ship vocab.txt too


def write_standin(folder: Path, kind: str, *, tokenizer: bool = True, seed: int = 0) -> Path:
    """Save a tiny random checkpoint of family ``kind`` (``bert``/``roberta``/``distilbert``) into ``folder``."""
    import torch
    import transformers as T

    folder.mkdir(parents=True, exist_ok=True)
    (_bpe_tokenizer if kind == "roberta" else _wordpiece_tokenizer)(folder)
    vocab = len(T.AutoTokenizer.from_pretrained(folder))
    if kind == "bert":
        config = T.BertConfig(vocab_size=vocab, hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
                              num_attention_heads=TINY["heads"], intermediate_size=TINY["ffn"],
                              max_position_embeddings=512, pad_token_id=0, architectures=["BertForMaskedLM"])
        model_cls = T.BertForPreTraining  # the hub's BERT checkpoints: pooler + MLM + NSP heads
    elif kind == "roberta":
        config = T.RobertaConfig(vocab_size=vocab, hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
                                 num_attention_heads=TINY["heads"], intermediate_size=TINY["ffn"],
                                 max_position_embeddings=514, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                 type_vocab_size=1, architectures=["RobertaForMaskedLM"])
        model_cls = T.RobertaForMaskedLM  # no pooler weights, like the hub's roberta-base
    elif kind == "distilbert":
        config = T.DistilBertConfig(vocab_size=vocab, dim=TINY["hidden"], n_layers=TINY["layers"],
                                    n_heads=TINY["heads"], hidden_dim=TINY["ffn"], max_position_embeddings=512,
                                    pad_token_id=0, architectures=["DistilBertForMaskedLM"])
        model_cls = T.DistilBertForMaskedLM
    else:
        raise ValueError(f"unknown stand-in family {kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model_cls(config).save_pretrained(folder)
    if not tokenizer:
        for path in folder.iterdir():
            if path.name not in ("config.json", "model.safetensors", "generation_config.json"):
                path.unlink()
    return folder


def set_model_type(folder: Path, model_type: str) -> None:
    """Rewrite a stand-in's config.json to claim another ``model_type`` (its weights stay)."""
    path = folder / "config.json"
    config = json.loads(path.read_text("utf-8"))
    config["model_type"] = model_type
    config.pop("architectures", None)
    path.write_text(json.dumps(config, indent=2), "utf-8")


# ------------------------------------------------------------------ the cache
def repo_folder(hf_home: Path, repo_id: str) -> Path:
    return Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def add_to_cache(hf_home: Path, repo_id: str, files_from: Path, commit: str = STANDIN_COMMIT) -> Path:
    """Put the files of ``files_from`` into the cache as ``repo_id`` at ``commit`` (refs/main); returns the snapshot."""
    repo = repo_folder(hf_home, repo_id)
    if repo.exists():
        shutil.rmtree(repo)
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for path in sorted(files_from.iterdir()):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        (snapshot / path.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return snapshot


def build_hub_cache(hf_home: Path, ids: dict[str, str] | None = None) -> dict[str, Path]:
    """Write a stand-in for every id (default: :func:`hub_ids`, family from the id) -> snapshot paths.

    Stand-ins of one family are identical (same seed and tokenizer), so DiffCSE's generator shares
    the encoder's vocabulary as the real pairs do."""
    ids = ids if ids is not None else {repo_id: family(repo_id) for repo_id in hub_ids()}
    snapshots = {}
    with tempfile.TemporaryDirectory() as tmp:
        made: dict[str, Path] = {}
        for repo_id, kind in sorted(ids.items()):
            if kind not in made:
                made[kind] = write_standin(Path(tmp) / kind, kind)
            snapshots[repo_id] = add_to_cache(hf_home, repo_id, made[kind])
    return snapshots


def laptop_data_root(root: Path, shared: Path) -> Path:
    """A data root for the ``laptop``/``full`` chapters, offline: the shared data's SentEval tree, samples and
    documents (symlinks), and every registry file the presets would download stood in for by a file of the same
    format: the wiki sample for ``wiki1m``, the SNLI dev/test triplets for ``nli``, the WikiText articles for
    ``openwebtext``, the course's LLM-written groups for NGCSE's hybrid files. Nothing is copied."""
    from cselab.data import REGISTRY

    links = {rel: shared / rel for rel in ("senteval", "unsup/wiki_sample.txt", "unsup/sentences.txt",
                                            "nli/snli_devtest_triplets.csv", "docs/wikitext_docs.jsonl")}
    real = {"wiki1m": shared / "unsup/wiki_sample.txt", "nli": shared / "nli/snli_devtest_triplets.csv",
            "openwebtext": shared / "docs/wikitext_docs.jsonl", "wikitext-docs": shared / "docs/wikitext_docs.jsonl"}
    stand_in = {**OFFLINE_DATA, **real}  # shared real text where it exists, else the CLI pass's shipped files
    links.update({REGISTRY[name].target: source for name, source in stand_in.items()})
    for target, source in links.items():
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: the laptop/full chapter pass needs the shared data.")
        if not (root / target).exists():
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            (root / target).symlink_to(source)
    missing = [name for name, entry in REGISTRY.items() if not (root / entry.target).exists()]
    if missing:
        raise ValueError(f"No offline stand-in for the registry data {missing}: add one to "
                         "tests/hub_standins.py:laptop_data_root().")
    return root


def offline_env(hf_home: Path, base: dict | None = None) -> dict[str, str]:
    """An environment that reads models only from ``hf_home``'s cache (no network)."""
    env = dict(os.environ if base is None else base)
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_ENDPOINT"):
        env.pop(key, None)
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


# ------------------------------------------------------------------ running cselab against it
def smoke_overrides(preset: str, steps: int = 2) -> list[str]:
    """``--set`` overrides for a ``steps``-step CPU run of ``preset`` on the shipped data."""
    from cselab.configs import PRESETS

    config = PRESETS[preset]
    train_file = config.train_file
    if train_file in OFFLINE_DATA:
        train_file = str(OFFLINE_DATA[train_file])
    elif not Path(train_file).is_file():
        raise ValueError(f"{preset}: no offline stand-in for train_file={train_file!r}; add it to OFFLINE_DATA.")
    batch = min(config.batch_size, 4 if config.method == "declutr" else 8)
    sets = {"max_steps": steps, "device": "cpu", "precision": "fp32", "eval_data": "sample", "train_file": train_file,
            "batch_size": batch, "max_train_samples": batch * steps, "eval_steps": steps, "save_steps": steps,
            "log_steps": 1, "epochs": 1}
    if config.method == "declutr":  # the toy stories are shorter than 2 * num_anchors * max_span_length tokens
        sets["scale_spans"] = True
    if config.method == "ngcse":
        sets["aigen_batch_size"] = min(config.aigen_batch_size, batch)
    return [f"{k}={v}" for k, v in sets.items()]


def run_cli_batch(jobs: list[dict]) -> list[dict]:
    """Run ``cselab.cli.main(job["argv"])`` for each job in this process; never raises.

    Returns per job: ``rc`` (None if it raised), ``error`` (``Type: message``), ``seconds``, ``stdout`` tail."""
    import contextlib
    import io
    import traceback

    from cselab import cli

    results = []
    for job in jobs:
        out, start = io.StringIO(), time.perf_counter()
        rc, error = None, None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                rc = cli.main(job["argv"])
            except SystemExit as exc:  # argparse errors
                rc, error = exc.code, f"SystemExit: {out.getvalue()[-2000:]}"
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
        results.append({"name": job.get("name"), "rc": rc, "error": error,
                        "seconds": round(time.perf_counter() - start, 2), "stdout": out.getvalue()[-4000:]})
    return results


def main(argv: list[str]) -> int:
    """``python tests/hub_standins.py JOBS.json RESULTS.json``: run_cli_batch (set the environment first)."""
    jobs = json.loads(Path(argv[0]).read_text("utf-8"))
    Path(argv[1]).write_text(json.dumps(run_cli_batch(jobs), indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
