"""Evaluation harnesses: EVAR-style linear evaluation of frozen clip features.

``run_linear_eval("cnn14-fusion", "DIR")`` (or ``audiorep linear-eval``); see
:mod:`audiorep.evaluation.linear` for the protocol and :mod:`audiorep.evaluation.features`
for the model specs and the feature cache.
"""

from audiorep.evaluation.features import (
    MODEL_SPECS,
    ClipFeatureExtractor,
    FeatureCache,
    make_extractor,
)
from audiorep.evaluation.linear import (
    Clip,
    LinearConfig,
    LinearEvalResult,
    assign_splits,
    evaluate_features,
    read_dataset,
    run_linear_eval,
    standardize,
    stratified_split,
    train_linear,
)

__all__ = [
    "MODEL_SPECS",
    "Clip",
    "ClipFeatureExtractor",
    "FeatureCache",
    "LinearConfig",
    "LinearEvalResult",
    "assign_splits",
    "evaluate_features",
    "make_extractor",
    "read_dataset",
    "run_linear_eval",
    "standardize",
    "stratified_split",
    "train_linear",
]
