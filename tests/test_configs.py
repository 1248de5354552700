"""Training configurations: the papers' presets, overrides, validation and (de)serialisation.

The expected hyper-parameters are written out here from SimCSE (reference/methods.md §1, §2.3,
§3.3: paper Table A.1, run_unsup_example.sh, run_sup_example.sh, HF Trainer defaults), not
read from cselab.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from cselab.configs import PRESETS, TrainConfig, config_from_dict, resolve_config

REPO = Path(__file__).resolve().parents[1]

# shared by every SimCSE base run: 32 tokens, tau 0.05, dropout 0.1 (config default), dev eval every
# 125 steps (scripts), HF defaults seed 42 and max_grad_norm 1.0
COMMON = dict(max_length=32, temperature=0.05, dropout=0.1, eval_steps=125, seed=42, grad_clip=1.0,
              max_steps=None, max_train_samples=None)
PAPER = {
    "unsup-simcse-bert-base": dict(method="unsup-simcse", model="bert-base-uncased", train_file="wiki1m",
                                   batch_size=64, learning_rate=3e-5, epochs=1),
    "unsup-simcse-roberta-base": dict(method="unsup-simcse", model="roberta-base", train_file="wiki1m",
                                      batch_size=512, learning_rate=1e-5, epochs=1),
    "sup-simcse-bert-base": dict(method="sup-simcse", model="bert-base-uncased", train_file="nli",
                                 batch_size=512, learning_rate=5e-5, epochs=3, hard_negative_weight=0.0),
    "sup-simcse-roberta-base": dict(method="sup-simcse", model="roberta-base", train_file="nli",
                                    batch_size=512, learning_rate=5e-5, epochs=3, hard_negative_weight=0.0),
}
BASE = "unsup-simcse-bert-base"


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_have_the_paper_hyperparameters(name):
    config = PRESETS[name]
    for key, value in {**COMMON, **PAPER[name]}.items():
        assert getattr(config, key) == value, f"{name}: {key}={getattr(config, key)!r}, paper: {value!r}"
    assert config.eval_data == "stsb-dev"  # SimCSE selects checkpoints on STS-B dev
    assert config.scale_fix is False  # SimCSE keeps the 1/N gradient scale
    assert config.pooler_type == "cls"  # official --pooler_type cls
    assert config.train_pooling == "cls_before_pooler"  # the method's MLP over the raw [CLS]; no backbone pooler
    assert config.eval_pooling == ("cls_before_pooler" if config.method == "unsup-simcse" else "cls")


def test_unsup_bert_is_the_default_config():
    assert TrainConfig() == PRESETS[BASE]


@pytest.mark.parametrize("method", ["unsup-simcse", "sup-simcse"])
@pytest.mark.parametrize("variant", ["ci", "laptop"])
def test_ci_and_laptop_variants_exist(method, variant):
    config = PRESETS[f"{method}-{variant}"]
    assert config.method == method
    # only model, data and budget change: the method's own hyper-parameters are the paper's
    assert (config.temperature, config.dropout, config.max_length) == (0.05, 0.1, 32)
    if variant == "laptop":
        assert config.max_steps is not None and config.max_steps >= 1
    elif config.max_steps is not None:  # the pretrained offline encoder: a fixed, short budget
        assert config.model == "cselab/smollm2-2l" and config.max_steps <= 100
    else:  # the shipped data: 1,024 examples, so a bounded number of steps
        assert config.epochs * math.ceil(1024 / config.batch_size) <= 100
    assert config.pooler_type == ("avg" if config.model in ("cselab/tiny", "cselab/smollm2-2l") else "cls")
    assert (config.train_pooling, config.eval_pooling) == (("avg", "avg") if variant == "ci" else
                                                           ("cls_before_pooler",
                                                            PRESETS[f"{method}-bert-base"].eval_pooling))


@pytest.mark.parametrize("method", ["unsup-simcse", "sup-simcse"])
def test_ci_variant_is_offline(method):
    """The ci presets of SimCSE: the pretrained offline encoder on real text when the data root has it (else the
    shipped files, test_train.py), evaluated on STS-B dev when present; -tiny keeps the former random-encoder ones."""
    config = PRESETS[f"{method}-ci"]
    assert config.model == "cselab/smollm2-2l" and config.device == "cpu" and config.eval_data == "auto"
    assert config.train_file == {"unsup-simcse": "text:unlabeled", "sup-simcse": "text:nli"}[method]
    config = PRESETS[f"{method}-tiny"]
    assert config.model == "cselab/tiny"
    path = Path(config.train_file)
    assert path.is_absolute() and path.is_file(), config.train_file
    assert path.resolve().parent == (REPO / "data").resolve()
    assert config.device == "cpu" and config.eval_data == "sample"
    if method == "sup-simcse":  # the NLI triplets: the columns supervised SimCSE reads
        header = path.read_text("utf-8").splitlines()[0]
        assert header.split(",")[:3] == ["sent0", "sent1", "hard_neg"]


def test_laptop_variants_use_the_registry_data():
    assert PRESETS["unsup-simcse-laptop"].train_file == "wiki1m"
    assert PRESETS["sup-simcse-laptop"].train_file == "nli"


# ----------------------------------------------------------------------------- overrides
def test_text_overrides_are_converted_to_the_field_types():
    config = resolve_config(BASE, {"batch_size": "16", "learning_rate": "1e-4", "scale_fix": "true",
                                   "max_steps": "None", "temperature": "0.1", "model": "roberta-base",
                                   "max_train_samples": "1000", "hard_negative_weight": "-1.5"})
    assert config.batch_size == 16 and type(config.batch_size) is int
    assert config.learning_rate == 1e-4 and type(config.learning_rate) is float
    assert config.scale_fix is True
    assert config.max_steps is None
    assert config.temperature == 0.1 and config.model == "roberta-base"
    assert config.max_train_samples == 1000 and config.hard_negative_weight == -1.5
    # untouched keys keep the preset's values
    assert config.epochs == 1 and config.train_file == "wiki1m"


def test_text_overrides_as_a_list_of_key_value():
    config = resolve_config("sup-simcse-tiny", ["max_steps=5", "scale_fix = no", "temperature=1",
                                              "hard_negative_weight=-inf", "train_file=a=b.csv"])
    assert config.max_steps == 5 and config.scale_fix is False
    assert config.temperature == 1.0 and type(config.temperature) is float
    assert config.hard_negative_weight == -math.inf
    assert config.train_file == "a=b.csv"  # split on the first '=' only


@pytest.mark.parametrize("text,value", [("none", None), ("null", None), ("", None), ("7", 7)])
def test_optional_int_accepts_none(text, value):
    assert resolve_config(BASE, {"max_steps": text}).max_steps == value


@pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("yes", True), ("False", False),
                                        ("0", False), ("no", False)])
def test_bool_overrides(text, value):
    assert resolve_config(BASE, {"scale_fix": text}).scale_fix is value


def test_typed_keyword_overrides():
    config = resolve_config("sup-simcse-tiny", temperature=0.2, max_steps=None)
    assert config.temperature == 0.2 and config.max_steps is None and config.method == "sup-simcse"


def test_presets_are_not_modified_by_overrides():
    before = PRESETS[BASE]
    resolve_config(BASE, {"batch_size": "8"})
    assert PRESETS[BASE] is before and PRESETS[BASE].batch_size == 64


@pytest.mark.parametrize("overrides", [{"batchsize": "3"}, ["batchsize=3"]])
def test_unknown_key_is_rejected_by_name(overrides):
    with pytest.raises(ValueError, match="batchsize"):
        resolve_config(BASE, overrides)


def test_unknown_keyword_is_rejected_by_name():
    with pytest.raises(ValueError, match="learning_rat"):
        resolve_config(BASE, learning_rat=1e-3)


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ValueError, match="batch_size16"):
        resolve_config(BASE, ["batch_size16"])


@pytest.mark.parametrize("key,text", [
    ("batch_size", "0"),
    ("batch_size", "-4"),
    ("batch_size", "16.5"),
    ("temperature", "-1"),
    ("temperature", "0"),
    ("temperature", "nan"),
    ("dropout", "1.5"),
    ("dropout", "-0.1"),
    ("precision", "fp8"),
    ("method", "x"),
    ("learning_rate", "abc"),
    ("learning_rate", "0"),
    ("epochs", "0"),
    ("max_length", "1"),
    ("max_steps", "0"),
    ("max_train_samples", "0"),
    ("eval_data", "stsb-test"),
    ("device", "tpu"),
    ("grad_clip", "0"),
    ("scale_fix", "maybe"),
    ("pooler_type", "mean"),
    ("seed", "forty-two"),
])
def test_bad_values_are_rejected_naming_the_key(key, text):
    with pytest.raises(ValueError, match=key):
        resolve_config(BASE, {key: text})
    with pytest.raises(ValueError, match=key):
        resolve_config(BASE, [f"{key}={text}"])


def test_nan_grad_clip_is_rejected():
    with pytest.raises(ValueError, match="grad_clip"):
        resolve_config(BASE, {"grad_clip": "nan"})


@pytest.mark.parametrize("text", ["nan", "inf", "+inf"])
def test_non_finite_hard_negative_weight_is_rejected(text):
    with pytest.raises(ValueError, match="hard_negative_weight"):
        resolve_config("sup-simcse-tiny", {"hard_negative_weight": text})


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError) as info:
        resolve_config("simcse-bert")
    message = str(info.value)
    assert "simcse-bert" in message
    for name in PRESETS:
        assert name in message


def test_every_preset_is_valid():
    for name, config in PRESETS.items():
        assert isinstance(config, TrainConfig)
        assert resolve_config(name) == config


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS[BASE].batch_size = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------- serialisation
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    config = resolve_config(name, {"max_steps": "3", "scale_fix": "true"})
    text = config.to_json()
    data = json.loads(text)
    assert set(data) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert config_from_dict(data) == config
    assert config_from_dict(config.to_dict()) == config


def test_round_trip_keeps_none_and_negative_infinity():
    config = resolve_config("sup-simcse-tiny", {"max_steps": "none", "hard_negative_weight": "-inf"})
    back = config_from_dict(json.loads(config.to_json()))
    assert back.max_steps is None and back.hard_negative_weight == -math.inf


def test_config_from_dict_rejects_unknown_keys():
    data = PRESETS[BASE].to_dict()
    data["warmup_ratio"] = 0.1
    with pytest.raises(ValueError, match="warmup_ratio"):
        config_from_dict(data)


def test_config_from_dict_validates_values():
    data = PRESETS[BASE].to_dict()
    data["temperature"] = 0.0
    with pytest.raises(ValueError, match="temperature"):
        config_from_dict(data)


# DeCLUTR training_config/declutr.jsonnet (reference §7.3), written out here: 4 documents per step,
# 1 epoch, lr 5e-5, AdamW eps 1e-6, weight decay 0.1, slanted triangular, tau 0.05, spans 32-512,
# 2 anchors x 2 positives, MLM 15 % with weight 1, mean pooling, inputs of 512 tokens.
DECLUTR = dict(method="declutr", train_file="openwebtext", batch_size=4, epochs=1, learning_rate=5e-5,
               adam_epsilon=1e-6, weight_decay=0.1, lr_schedule="slanted_triangular", temperature=0.05,
               min_span_length=32, max_span_length=512, num_anchors=2, num_positives=2, masking_ratio=0.15,
               mlm_weight=1.0, pooler_type="avg", max_length=512, scale_spans=False, span_sampling=None,
               grad_clip=1.0, scale_fix=False)


@pytest.mark.parametrize("name,model", [("declutr-small", "distilroberta-base"), ("declutr-base", "roberta-base")])
def test_declutr_presets_have_the_official_hyperparameters(name, model):
    config = PRESETS[name]
    for key, value in {**DECLUTR, "model": model}.items():
        assert getattr(config, key) == value, f"{name}: {key}={getattr(config, key)!r}, official: {value!r}"
    assert config.eval_pooling == "avg"


def test_declutr_ci_and_laptop_are_offline_variants():
    ci, laptop = PRESETS["declutr-tiny"], PRESETS["declutr-laptop"]
    assert ci.model == "cselab/tiny" and Path(ci.train_file).name == "toy_docs.jsonl" and ci.device == "cpu"
    assert Path(ci.train_file).resolve().parent == (REPO / "data").resolve()
    assert ci.scale_spans and laptop.scale_spans and laptop.train_file == "wikitext-docs"
    assert (ci.weight_decay, ci.adam_epsilon, ci.lr_schedule) == (0.1, 1e-6, "slanted_triangular")


@pytest.mark.parametrize("key,text", [("weight_decay", "-0.1"), ("adam_epsilon", "0"), ("lr_schedule", "cosine"),
                                      ("num_anchors", "0"), ("max_span_length", "0"), ("span_sampling", "random"),
                                      ("mlm_weight", "-1"), ("min_span_length", "600")])
def test_bad_declutr_values_are_rejected_naming_the_key(key, text):
    with pytest.raises(ValueError, match=key):
        resolve_config("declutr-base", {key: text})


# ----------------------------------------------------------------------------- NGCSE
# Written out from reference/methods.md §8.4 (scripts/train_{bert,roberta}_{wiki,nli}_sts.sh, appendix
# Table 6): lr 1e-5, batch 256, tau 0.05, beta 1, --pooler_type mask, max_len 32, eval/save/log every 125
# steps, no fp16; Wiki.STS_HT 1 epoch, margins (5e-3, 5e-2); NLI.STS_HT 3 epochs, margins (5e-3, 1e-1);
# §8.2: embeddings frozen; §8.3: the InfoNCE positive is the official default (index 2 when K > 3).
NGCSE_COMMON = dict(method="ngcse", learning_rate=1e-5, batch_size=256, temperature=0.05, beta=1.0,
                    pooler_type="mask", max_length=32, eval_steps=125, save_steps=125, log_steps=125,
                    precision="fp32", freeze_embeddings=True, pair_template=True, positive_index=None,
                    eval_data="stsb-dev", seed=42, dropout=0.1, grad_clip=1.0, max_steps=None,
                    max_train_samples=None, weight_decay=0.0, lr_schedule="linear")
NGCSE_PAPER = {
    "ngcse-wiki-sts-ht-bert-base": dict(model="bert-base-uncased", train_file="ngcse-wiki-sts", epochs=1,
                                        margins=(0.005, 0.05)),
    "ngcse-wiki-sts-ht-roberta-base": dict(model="roberta-base", train_file="ngcse-wiki-sts", epochs=1,
                                           margins=(0.005, 0.05)),
    "ngcse-nli-sts-ht-bert-base": dict(model="bert-base-uncased", train_file="ngcse-nli-sts", epochs=3,
                                       margins=(0.005, 0.1)),
    "ngcse-nli-sts-ht-roberta-base": dict(model="roberta-base", train_file="ngcse-nli-sts", epochs=3,
                                          margins=(0.005, 0.1)),
}
NGCSE_HUB = "https://huggingface.co/datasets/H34lthy/NGCSE_hybrid_dataset/resolve/main/"  # reference §8.7


@pytest.mark.parametrize("name", sorted(NGCSE_PAPER))
def test_ngcse_presets_have_the_scripts_hyperparameters(name):
    config = PRESETS[name]
    for key, value in {**NGCSE_COMMON, **NGCSE_PAPER[name]}.items():
        assert getattr(config, key) == value, f"{name}: {key}={getattr(config, key)!r}, script: {value!r}"
    assert type(config.margins) is tuple
    assert config.eval_pooling == "mask"  # evaluated on the raw [MASK] state of the prompt
    assert config.train_pooling == "cls_before_pooler"  # the loaded encoder's own pooler is not used


def test_ngcse_registry_entries_point_at_the_hybrid_data_set():
    from cselab.data import REGISTRY

    for name, file in (("ngcse-wiki-sts", "wiki_sts.jsonl"), ("ngcse-nli-sts", "nli_sts.jsonl")):
        entry = REGISTRY[name]
        assert entry.url == NGCSE_HUB + file and entry.target.endswith(file) and not entry.archive


def test_ngcse_ci_and_laptop_variants():
    ci, laptop = PRESETS["ngcse-tiny"], PRESETS["ngcse-laptop"]
    for config in (ci, laptop):  # NLI.STS_HT's method settings; only model, data, budget (and ci's pooler) change
        assert (config.method, config.temperature, config.beta, config.margins) == ("ngcse", 0.05, 1.0, (0.005, 0.1))
        assert (config.freeze_embeddings, config.max_length) == (True, 32)
    assert (laptop.pooler_type, ci.pooler_type) == ("mask", "avg")  # ci: mean pooling, like every ci preset
    # ci: the tiny encoder on the shipped NLI triplets (K = 3 groups), the other ci presets' budget
    assert (ci.model, ci.device, ci.eval_data, ci.precision) == ("cselab/tiny", "cpu", "sample", "fp32")
    assert (ci.epochs, ci.batch_size, ci.learning_rate, ci.eval_steps) == (3, 32, 3e-4, 32)
    path = Path(ci.train_file)
    assert path.resolve() == (REPO / "data" / "toy_nli.csv").resolve()
    assert path.read_text("utf-8").splitlines()[0].split(",") == ["sent0", "sent1", "hard_neg"]
    assert ci.epochs * math.ceil(1024 / ci.batch_size) <= 100
    # laptop: the small BERT for 500 steps on the NLI.STS_HT registry data
    assert laptop.train_file == "ngcse-nli-sts" and laptop.model == PRESETS["unsup-simcse-laptop"].model
    assert laptop.max_steps == 500 and laptop.device == "auto"


@pytest.mark.parametrize("text,value", [("0.005,0.05", (0.005, 0.05)), (" 0.005 , 0.1 ", (0.005, 0.1)),
                                        ("(1e-3, 1e-2)", (0.001, 0.01)), ("[0.2]", (0.2,)), ("0", (0.0,))])
def test_margins_override_parses_a_comma_separated_list(text, value):
    for overrides in ({"margins": text}, [f"margins={text}"]):
        config = resolve_config("ngcse-tiny", overrides)
        assert config.margins == value and type(config.margins) is tuple
        assert all(type(m) is float for m in config.margins)


def test_ngcse_text_overrides():
    config = resolve_config("ngcse-tiny", ["beta=0.5", "positive_index=2", "freeze_embeddings=no",
                                         "pair_template=false", "pooler_type=cls"])
    assert (config.beta, config.positive_index) == (0.5, 2)
    assert (config.freeze_embeddings, config.pair_template) == (False, False)
    assert config.pooler_type == "cls" and config.eval_pooling == "cls_before_pooler"
    assert resolve_config("ngcse-tiny", {"positive_index": "none"}).positive_index is None


def test_margins_keyword_list_becomes_a_tuple():
    config = resolve_config("ngcse-tiny", margins=[0.01, 1])
    assert config.margins == (0.01, 1.0) and type(config.margins) is tuple
    hash(config)  # still a frozen, hashable value


@pytest.mark.parametrize("key,text", [
    ("margins", "a,b"),
    ("margins", ""),
    ("margins", "0.1,,0.2"),
    ("margins", "-0.1"),
    ("margins", "0.1,nan"),
    ("margins", "inf"),
    ("beta", "-1"),
    ("beta", "nan"),
    ("beta", "inf"),
    ("beta", "x"),
    ("positive_index", "0"),
    ("positive_index", "-1"),
    ("positive_index", "1.5"),
    ("freeze_embeddings", "maybe"),
    ("pair_template", "2"),
])
def test_bad_ngcse_values_are_rejected_naming_the_key(key, text):
    with pytest.raises(ValueError, match=key):
        resolve_config("ngcse-tiny", {key: text})


@pytest.mark.parametrize("value", ["0.1", (), [0.1, "x"], (True,), 0.1])
def test_bad_margins_keyword_is_rejected_naming_the_key(value):
    with pytest.raises(ValueError, match="margins"):
        resolve_config("ngcse-tiny", margins=value)


@pytest.mark.parametrize("method", ["unsup-simcse", "sup-simcse", "esimcse", "diffcse"])
def test_mask_pooling_is_only_for_ngcse(method):
    with pytest.raises(ValueError, match=r"pooler_type='mask'.*ngcse"):
        resolve_config(f"{method}-ci", pooler_type="mask")
    assert resolve_config("ngcse-tiny", pooler_type="mask").eval_pooling == "mask"


def test_round_trip_keeps_margins_a_tuple():
    config = resolve_config("ngcse-tiny", {"margins": "0.001,0.02,0.3", "positive_index": "1"})
    data = json.loads(config.to_json())
    assert data["margins"] == [0.001, 0.02, 0.3]  # JSON has no tuples
    back = config_from_dict(data)
    assert back == config and back.margins == (0.001, 0.02, 0.3) and type(back.margins) is tuple
    data["margins"] = [0.1, -1]
    with pytest.raises(ValueError, match="margins"):
        config_from_dict(data)


def test_static_shapes_and_compile_mode_values():
    config = resolve_config("unsup-simcse-tiny", {"static_shapes": "16,32", "compile_mode": "reduce-overhead"})
    assert (config.static_shapes, config.compile_mode) == ((16, 32), "reduce-overhead")
    assert resolve_config("unsup-simcse-tiny", {"static_shapes": "()"}).static_shapes == ()
    assert config_from_dict(json.loads(config.to_json())) == config  # the JSON list comes back as a tuple
    for bad, match in [({"static_shapes": (32, 16)}, "increasing"), ({"static_shapes": (0,)}, "increasing"),
                       ({"static_shapes": "16"}, "tuple of token lengths"), ({"compile_mode": "max"}, "choose"),
                       ({"compile_mode": "reduce-overhead"}, "set static_shapes too")]:
        with pytest.raises(ValueError, match=match):
            resolve_config("unsup-simcse-tiny", **bad)


def test_config_view_shows_the_generic_fields_and_only_the_methods_own():
    import dataclasses

    from cselab.configs import TrainConfig
    from cselab.methods import METHOD_FIELDS, SPEED_FIELDS, config_view

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {f for fields in METHOD_FIELDS.values() for f in fields} <= names  # no stale field names
    assert {p.method for p in PRESETS.values()} <= set(METHOD_FIELDS)  # every preset's method has a view
    view = config_view(resolve_config("unsup-simcse-tiny"))
    # the example: a SimCSE run shows none of DiffCSE's, ESimCSE's or NGCSE's fields
    assert not {"generator", "queue_size", "margins", "hard_negative_weight"} & set(view)
    assert {"method", "model", "temperature", "dropout", "batch_size", "learning_rate"} <= set(view)
    assert not set(SPEED_FIELDS) & set(view)  # speed options at their defaults stay hidden
    assert view["temperature"] == 0.05 and list(view)[0] == "method"
    es = config_view(resolve_config("esimcse-tiny", compile=True))
    assert list(es)[-4:] == ["dup_rate", "queue_size", "momentum", "momentum_init"] and es["compile"] is True
    assert "masking_ratio" in config_view(resolve_config("diffcse-tiny")) and "margins" in config_view(
        resolve_config("ngcse-tiny"))
    with pytest.raises(ValueError, match="method='nope'"):  # refused before any view is drawn
        config_view(dataclasses.replace(resolve_config("unsup-simcse-tiny"), method="nope"))


def test_eval_data_name_is_what_a_reader_calls_it():
    assert resolve_config("unsup-simcse-tiny").eval_data_name == "the shipped scored pairs (data/sts_sample.tsv)"
    assert PRESETS["unsup-simcse-bert-base"].eval_data_name == "STS-B dev"


def test_eval_max_pairs_is_validated():
    assert resolve_config("unsup-simcse-ci").eval_max_pairs == 500
    with pytest.raises(ValueError, match="eval_max_pairs=1"):
        resolve_config("unsup-simcse-tiny", eval_max_pairs=1)
    with pytest.raises(ValueError, match="eval_data='dev'"):
        resolve_config("unsup-simcse-tiny", eval_data="dev")


# ------------------------------------------------------------------ run folders written by earlier versions
SAVED_CONFIG = Path(__file__).parent / "fixtures" / "train_config_2026-12-02.json"  # TrainConfig.to_json() that day


def test_a_train_config_json_of_an_earlier_version_still_loads_and_its_finished_run_is_reused(tmp_path, capsys):
    """Written by the code of 2026-12-02 for resolve_config("esimcse-ci", seed=3) and committed: a later layout of
    TrainConfig must still read it, or resume and lecture mode (run_or_load) would retrain finished runs."""
    import shutil

    from cselab.train import run_or_load

    want = resolve_config("esimcse-ci", seed=3)
    assert config_from_dict(json.loads(SAVED_CONFIG.read_text("utf-8"))) == want
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(SAVED_CONFIG, run / "train_config.json")
    (run / "result.json").write_text(json.dumps({"initial_score": 51.0, "best_score": 65.0, "best_step": 40,
                                                  "final_score": 64.0, "steps": 40, "seconds": 30.0}), "utf-8")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval_score": 51.0}) + "\n", "utf-8")
    result = run_or_load(want, run)  # nothing to train: the finished run is loaded
    assert (result.steps, result.best_score) == (40, 65.0)
    assert "loaded the finished run" in capsys.readouterr().out


# ------------------------------------------------------------------ method fields named by their method
def test_set_accepts_a_method_prefixed_field_of_the_trained_method():
    assert resolve_config("esimcse-tiny", ["esimcse.queue_size=32"]).queue_size == 32
    assert resolve_config("esimcse-tiny", ["method=diffcse", "diffcse.lambda_weight=0.1"]).lambda_weight == 0.1
    assert resolve_config("sup-simcse-tiny", ["sup-simcse.hard_negative_weight=0.5"]).hard_negative_weight == 0.5


@pytest.mark.parametrize("item, match", [
    ("simcse.queue_size=3", r"no method 'simcse'; registered: \['unsup-simcse'"),
    ("diffcse.lambda_weight=0.1", r"trains 'esimcse', not 'diffcse'"),
    ("esimcse.temperature=0.1", r"esimcse has no field 'temperature'; its fields are \['dup_rate'"),
    ("esimcse.queue_size=abc", r"queue_size='abc': expected int"),
])
def test_a_method_prefixed_field_names_the_problem(item, match):
    with pytest.raises(ValueError, match=match):
        resolve_config("esimcse-tiny", [item])


def test_each_method_module_checks_its_own_fields():
    from cselab.methods import REGISTRY

    for method, field, bad in (("esimcse", "dup_rate", 1.5), ("diffcse", "lambda_weight", -1.0),
                               ("declutr", "span_sampling", "both"), ("ngcse", "aigen_batch_size", -2)):
        spec = REGISTRY[method]
        assert field in spec.fields and spec.check is not None
        # the check alone, on a plain namespace (a TrainConfig with the bad value cannot be built)
        problems = spec.check(SimpleNamespace(**{**PRESETS[f"{method}-tiny"].to_dict(), field: bad}))
        assert len(problems) == 1 and problems[0].startswith(f"{field}=")
        with pytest.raises(ValueError, match=f"{field}="):  # and TrainConfig runs it, whatever the method
            resolve_config("unsup-simcse-tiny", **{field: bad})
