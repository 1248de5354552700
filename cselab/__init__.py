"""cselab: the companion library of the contrastive sentence-embedding course.

The chapters (``notebooks/``) derive each idea in a few lines of torch, check it against
the functions here, and then use these tested versions.
"""
from . import data, encoders, evaluate, exercises, losses, profiles, utils
from .encoders import POOLERS, HubUnreachableError, SentenceEncoder
from .evaluate import alignment_uniformity, evaluate_sts, pair_classification, similarity
from .profiles import PROFILES, Profile, default_profile, resolve_profile
from .utils import seed_everything

__all__ = [
    "POOLERS",
    "PROFILES",
    "HubUnreachableError",
    "Profile",
    "SentenceEncoder",
    "alignment_uniformity",
    "default_profile",
    "evaluate_sts",
    "pair_classification",
    "resolve_profile",
    "seed_everything",
    "similarity",
]
__version__ = "0.1.0"
