"""Shared fixtures. Real SentEval data comes from $CSELAB_DATA_DIR (CI sets it to ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real data root; tests that need it are skipped only when CSELAB_DATA_DIR is unset."""
    value = os.environ.get("CSELAB_DATA_DIR")
    if not value:
        pytest.skip("CSELAB_DATA_DIR is not set (CI sets it to ../shared/data)")
    root = Path(value)
    assert (root / "senteval" / "downstream" / "STS").is_dir(), f"CSELAB_DATA_DIR={root} lacks senteval/downstream/STS"
    return root


@pytest.fixture(scope="session")
def tiny_encoder():
    """The offline tiny encoder with mean pooling (seed 0)."""
    from cselab import SentenceEncoder

    return SentenceEncoder.from_pretrained("cselab/tiny", pooling="avg")


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    """Keep datasets' cache (load_dataset + map results) out of ~/.cache for one test module;
    modules that train use it with ``pytestmark = pytest.mark.usefixtures("datasets_cache")``."""
    import datasets.config

    cache = tmp_path_factory.mktemp("hf_datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_CACHE", str(cache))
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        yield cache


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """The tiny BERT (seed 0) saved as a plain transformers directory."""
    from cselab.encoders import tiny_bert

    path = tmp_path_factory.mktemp("hf") / "tiny-bert"
    model, tokenizer = tiny_bert(0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def no_encode_cache():
    """Tests compute every embedding: ``SentenceEncoder.encode``'s in-process cache would let a second
    call (another batch size, padding, training mode) return the first call's rows. Session-scoped, so
    that it is off before any module fixture encodes; the cache's own tests (test_encoders.py) turn it on
    for themselves with ``cache_on``."""
    from cselab.encoders import ENCODE_CACHE

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ENCODE_CACHE, "max_bytes", 0)
        ENCODE_CACHE.clear()
        yield
        ENCODE_CACHE.clear()
