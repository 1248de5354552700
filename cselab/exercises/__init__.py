"""Checks for the chapters' exercises.

Each ``check_*`` runs the learner's function and a reference on seeded inputs (edge
cases included). On success it prints one line; on failure it raises ``AssertionError``
saying what differs (shape, or value on which input) and, when the answer matches a
known mistake, a hint about that mistake -- never just "wrong". A prediction check
(:func:`check_loss_predictions`) runs an experiment instead, prints what it measured next to
the predictions the learner wrote down, and explains every prediction that misses.

One module per chapter (``ch01`` ... ``ch10``); every check is importable from here.
"""
from __future__ import annotations

from .ch01 import check_collapsed_supervised_loss, check_decoupled_info_nce, check_uniformity
from .ch02 import check_all_setting, check_anisotropy, check_max_pooling
from .ch03 import (LOSS_CHANGES, check_alignment_from_views, check_identical_views_loss, check_loss_predictions,
                   loss_changes)
from .ch04 import check_alpha_zero_loss, check_count_false_negatives, check_duplicate_aware_loss
from .ch05 import check_delete_tokens, check_ema_after, check_repeat_tokens, check_steps_until
from .ch06 import RTD_GRADIENT_VARIANTS, check_changed_input_share, check_rtd_gradient_predictions, check_rtd_loss
from .ch07 import SPAN_RELATIONS, check_adjacent_pair, check_positive_start_range, check_span_relation
from .ch08 import check_hierarchical_triplet_loss, check_near_copy, check_rfd_alignment
from .ch09 import check_f1_at, check_mean_std, check_paired_difference
from .ch10 import check_dispersive_from_uniformity, check_group_gradient, check_last_token_positions

__all__ = [
    "LOSS_CHANGES", "RTD_GRADIENT_VARIANTS", "SPAN_RELATIONS", "check_adjacent_pair", "check_alignment_from_views",
    "check_all_setting", "check_alpha_zero_loss", "check_anisotropy", "check_changed_input_share",
    "check_collapsed_supervised_loss", "check_count_false_negatives", "check_decoupled_info_nce",
    "check_delete_tokens", "check_dispersive_from_uniformity", "check_duplicate_aware_loss", "check_ema_after",
    "check_f1_at", "check_group_gradient", "check_hierarchical_triplet_loss", "check_identical_views_loss",
    "check_last_token_positions", "check_loss_predictions", "check_max_pooling", "check_mean_std",
    "check_near_copy", "check_paired_difference", "check_positive_start_range", "check_repeat_tokens",
    "check_rfd_alignment", "check_rtd_gradient_predictions", "check_rtd_loss", "check_span_relation",
    "check_steps_until", "check_uniformity", "loss_changes",
]
