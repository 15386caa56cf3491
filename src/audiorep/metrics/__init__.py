"""Metric core: Gaussian statistics, Fréchet distance (FAD/FID), FAD-inf, KID, IS and MKL.

Independent of the rest of audiorep (numpy + torch only). Everything is float64.

Functions:

* :class:`GaussianStats` - streaming, mergeable mean/covariance (Chan update), ``.npz`` IO;
  :func:`load_stats` also reads google-research TFRecord and fadtk statistics.
* :func:`frechet_distance` / :func:`frechet_terms` - FD from means and covariances (symmetric
  Cholesky / eigh route, float64 noise truncated).
* :func:`frechet_distance_from_embeddings` / :func:`frechet_terms_from_embeddings` - FD from two
  embedding sets by QR + nuclear norm (exact for rank-deficient sets).
* :func:`frechet_terms_to_embeddings`, :func:`per_clip_fd` - background statistics vs clips.
* :func:`fad_inf` - fadtk's FAD-inf, seeded.
* :func:`kernel_inception_distance`, :func:`inception_score`, :func:`mean_kl_divergence`.

Classification (:mod:`audiorep.metrics.classification`): YouTube-8M's Hit@1, PERR, GAP and
top-20 MAP; AudioSet's mAP, mAUC and d'; the streaming :class:`ClassificationMetrics`.

Metric objects (``update`` / ``compute`` / ``reset`` / ``merge`` / ``sync``):
:class:`FrechetDistance`, :class:`KernelInceptionDistance`, :class:`InceptionScore`,
:class:`MeanKLDivergence`.
"""

from audiorep.metrics.classification import (
    ClassificationMetrics,
    audioset_metrics,
    average_precision_per_class,
    d_prime,
    global_average_precision,
    hit_at_one,
    precision_at_equal_recall_rate,
    roc_auc_per_class,
    yt8m_mean_average_precision,
)
from audiorep.metrics.fad_inf import FadInfResult, fad_inf, per_clip_fd
from audiorep.metrics.frechet import (
    FrechetTerms,
    PreparedReference,
    frechet_distance,
    frechet_distance_from_embeddings,
    frechet_terms,
    frechet_terms_from_embeddings,
    frechet_terms_from_stats,
    frechet_terms_to_embeddings,
)
from audiorep.metrics.inception import ISResult, inception_score
from audiorep.metrics.kid import KIDResult, kernel_inception_distance
from audiorep.metrics.kl import mean_kl_divergence, specvqgan_shared_key
from audiorep.metrics.objects import (
    FrechetDistance,
    InceptionScore,
    KernelInceptionDistance,
    MeanKLDivergence,
)
from audiorep.metrics.stats import GaussianStats
from audiorep.metrics.stats_io import (
    load_fadtk_stats,
    load_google_stats,
    load_stats,
    save_fadtk_stats,
)

__all__ = [
    "ClassificationMetrics",
    "audioset_metrics",
    "average_precision_per_class",
    "d_prime",
    "global_average_precision",
    "hit_at_one",
    "precision_at_equal_recall_rate",
    "roc_auc_per_class",
    "yt8m_mean_average_precision",
    "FadInfResult",
    "FrechetDistance",
    "FrechetTerms",
    "GaussianStats",
    "ISResult",
    "InceptionScore",
    "KIDResult",
    "KernelInceptionDistance",
    "MeanKLDivergence",
    "PreparedReference",
    "fad_inf",
    "frechet_distance",
    "frechet_distance_from_embeddings",
    "frechet_terms",
    "frechet_terms_from_embeddings",
    "frechet_terms_from_stats",
    "frechet_terms_to_embeddings",
    "inception_score",
    "kernel_inception_distance",
    "load_fadtk_stats",
    "load_google_stats",
    "load_stats",
    "mean_kl_divergence",
    "per_clip_fd",
    "save_fadtk_stats",
    "specvqgan_shared_key",
]
