"""Data: SentEval readers, training-file readers, the course's shipped files, downloads.

Data root = the ``data_dir`` argument, else ``$CSELAB_DATA_DIR``, else the user cache
(``$CSELAB_CACHE/data``, default ``~/.cache/cselab/data``). Under a root the layout is::

    senteval/downstream/STS/STS12-en-test/ ...   SentEval's standard layout
    senteval/downstream/SICK/SICK_test_annotated.txt ...
    senteval/downstream/MRPC/msr_paraphrase_{train,test}.txt
    nli/nli_for_simcse.csv                         sent0,sent1,hard_neg
    unsup/wiki1m_for_simcse.txt                    one sentence per line
    ngcse/{wiki,nli}_sts.jsonl                     NGCSE graded groups (cselab.methods.ngcse.read_graded_groups)

The STS readers reproduce SentEval (``senteval/sts.py``, ``sick.py``) exactly: pairs
with an empty gold line are dropped, sentences are whitespace-split and re-joined with
one space. Every reader names ``file:line`` when a line is malformed.

One module per concern: :mod:`.core` (data root, pair types), :mod:`.senteval` (STS, SICK-R, MRPC),
:mod:`.training` (training files, shipped files), :mod:`.registry` (downloads); every
name is importable from ``cselab.data``.
"""
from __future__ import annotations

import urllib.request  # noqa: F401  (cselab.data.urllib: the downloader's opener, patched by tests)

from .core import (CACHE_ENV, COURSE_DATA_DIR, DATA_ENV, DataFormatError, DataNotFoundError, LabeledPairs,
                   SPLIT_FILES, STS_SUBSETS, STS_TASKS, ScoredPairs, cache_dir, data_root, find_data_root,
                   read_lines, senteval_path)
from .senteval import (MRPC_HEADER, MRPC_SPLITS, load_sts_task, read_labeled_pairs, read_mrpc, read_sick,
                       read_sts_subset, read_sts_year, read_stsb)
from .training import (check_training_table, read_documents, read_nli_triplets, read_scored_pairs, read_sentences,
                       read_toy_corpus)
from .registry import (NGCSE_DATA_URL, PREPROCESSORS, REGISTRY, RemoteDataset, SIMCSE_DATA_URL, TRAINING_TEXT,
                       WIKITEXT_MARKERS, download, iter_openwebtext, training_text, wikitext_articles,
                       write_documents)

__all__ = [
    "CACHE_ENV", "COURSE_DATA_DIR", "DATA_ENV", "DataFormatError", "DataNotFoundError", "LabeledPairs", "MRPC_HEADER", "MRPC_SPLITS", "NGCSE_DATA_URL", "PREPROCESSORS", "REGISTRY",
    "RemoteDataset", "SIMCSE_DATA_URL", "SPLIT_FILES", "STS_SUBSETS", "STS_TASKS", "ScoredPairs", "TRAINING_TEXT",
    "WIKITEXT_MARKERS", "cache_dir", "check_training_table", "data_root", "download", "find_data_root",
    "iter_openwebtext", "load_sts_task", "read_documents",
    "read_labeled_pairs", "read_lines", "read_mrpc", "read_nli_triplets", "read_scored_pairs", "read_sentences",
    "read_sick", "read_sts_subset", "read_sts_year", "read_stsb", "read_toy_corpus", "senteval_path",
    "training_text", "wikitext_articles", "write_documents",
]
