"""Compare two embedding sets: FAD with its terms, and optionally FAD-inf, KID, per-clip FAD.

:func:`compare_sets` does the arithmetic on two :class:`~audiorep.fad.sources.EmbeddingSet`
objects and returns a :class:`FadReport`, which renders itself as text, JSON and a per-clip
CSV. Which Fréchet route is used is decided by what each side offers (see ``_fad_terms``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from audiorep.fad.cache import KEY_FIELDS
from audiorep.fad.sources import EmbeddingSet, SetError
from audiorep.metrics import (
    FadInfResult,
    FrechetTerms,
    KIDResult,
    PreparedReference,
    fad_inf,
    frechet_terms_from_embeddings,
    frechet_terms_from_stats,
    kernel_inception_distance,
)

# Below this many embeddings per dimension the covariance route loses accuracy on a
# rank-deficient set, while the data route (QR + nuclear norm) is both exact and cheap.
DATA_ROUTE_ROWS_PER_DIM = 4


class SettingsMismatchError(SetError):
    """The two sets were embedded with different settings; FAD between them is meaningless."""


@dataclass
class ClipScore:
    """FD of one eval clip's own embeddings against the background (``nan`` below 2 frames)."""

    clip: str
    fd: float
    frames: int


@dataclass
class FadReport:
    """Everything ``audiorep fad`` computed; ``lines()`` / ``as_dict()`` / ``write_per_clip()``."""

    terms: FrechetTerms
    background: EmbeddingSet
    eval: EmbeddingSet
    preset: str | None
    settings: dict | None
    fad_inf: FadInfResult | None = None
    kid: KIDResult | None = None
    per_clip: list[ClipScore] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fad(self) -> float:
        return self.terms.value

    def _settings_line(self) -> str:
        s = self.settings or {}
        if not s:
            return "settings:   unknown (statistics/embeddings without settings)"
        w = s.get("windowing") or {}
        if w.get("window_samples"):
            win = f"{w['window_samples'] / 16000:g} s windows every {w.get('hop_seconds')} s"
        else:
            win = f"0.96 s examples every {w.get('hop_seconds')} s"
        norm = "peak-normalised clips" if w.get("peak_normalize") else "no normalisation"
        act = "final ReLU" if s.get("final_relu") else "pre-activation"
        sha = str(s.get("weights_sha256", ""))[:12]
        return (
            f"settings:   {s.get('model')} ({act}), weights sha256 {sha}..., {win}, {norm}, "
            f"{s.get('frontend_dtype')} frontend, {s.get('precision')} model"
        )

    def lines(self) -> list[str]:
        t = self.terms
        out = [
            f"FAD: {t.value:.6f}",
            f"background: {self.background.describe()}",
            f"eval:       {self.eval.describe()}",
            f"dimensions: {self.background.dim}",
        ]
        if self.preset:
            out.append(f"preset:     {self.preset}")
        out.append(self._settings_line())
        if self.settings and self.settings.get("weights"):
            out.append(f"weights:    {self.settings['weights']}")
        out.append(
            f"terms:      |mu_b - mu_e|^2 = {t.mean_term:.6g}, tr S_b = {t.trace1:.6g}, "
            f"tr S_e = {t.trace2:.6g}, 2 tr sqrt(S_b S_e) = {2 * t.trace_sqrt_product:.6g} "
            f"({t.method})"
        )
        if self.fad_inf is not None:
            r = self.fad_inf
            out.append(
                f"FAD-inf:    {r.value:.6f} (slope {r.slope:.6g}, r^2 {r.r2:.4f}, "
                f"{len(r.points)} points n = {r.points[0][0]}..{r.points[-1][0]}, "
                f"seed {r.seed}, {'with' if r.replace else 'without'} replacement)"
            )
        if self.kid is not None:
            k = self.kid
            out.append(
                f"KID:        {k.mean:.6g} +- {k.std:.3g} ({k.subsets} subsets of {k.subset_size})"
            )
        if self.per_clip:
            scored = [c for c in self.per_clip if math.isfinite(c.fd)]
            if scored:
                worst = max(scored, key=lambda c: abs(c.fd))
                med = float(np.median([c.fd for c in scored]))
                out.append(
                    f"per clip:   {len(scored)} clips, median FD {med:.4g}, "
                    f"worst {worst.clip} ({worst.fd:.4g})"
                )
        out += [f"note:       {n}" for n in [*self.terms.notes, *self.notes]]
        return out

    def as_dict(self) -> dict:
        def side(s: EmbeddingSet) -> dict:
            return {
                "source": s.source,
                "kind": s.kind,
                "n": s.n,
                "clips": None if s.clips is None else len(s.clips),
                "empty_clips": s.empty,
                "failures": [{"path": p, "reason": r} for p, r in s.failures],
                "audio_seconds": s.audio_seconds,
                "cache_hits": s.cache_hits,
            }

        out: dict = {
            "fad": self.terms.value,
            "terms": self.terms.as_dict(),
            "dimensions": self.background.dim,
            "background": side(self.background),
            "eval": side(self.eval),
            "preset": self.preset,
            "settings": self.settings,
            "notes": list(self.notes),
        }
        if self.fad_inf is not None:
            r = self.fad_inf
            out["fad_inf"] = {
                "value": r.value,
                "slope": r.slope,
                "r2": r.r2,
                "points": [list(p) for p in r.points],
                "seed": r.seed,
                "replace": r.replace,
            }
        if self.kid is not None:
            k = self.kid
            out["kid"] = {
                "mean": k.mean,
                "std": k.std,
                "subsets": k.subsets,
                "subset_size": k.subset_size,
            }
        if self.per_clip is not None:
            out["per_clip"] = [
                {"clip": c.clip, "fd": c.fd if math.isfinite(c.fd) else None, "frames": c.frames}
                for c in self.per_clip
            ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)

    def write_per_clip(self, path: str | os.PathLike) -> Path:
        """CSV ``clip,fd,frames`` sorted by ``|FD|`` ascending (fadtk's order); ``nan`` last."""
        if self.per_clip is None:
            raise ValueError("no per-clip scores were computed")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["clip", "fd", "frames"])
            for c in self.per_clip:
                w.writerow([c.clip, repr(c.fd) if math.isfinite(c.fd) else "nan", c.frames])
        return p


def check_comparable(a: EmbeddingSet, b: EmbeddingSet) -> dict | None:
    """The shared settings of two sets; raises :class:`SettingsMismatchError` when they differ.

    Sets without recorded settings (foreign statistics or ``.npy`` files) are accepted: there
    is nothing to check, and the report says the settings are unknown.
    """
    if a.dim is not None and b.dim is not None and a.dim != b.dim:
        raise SettingsMismatchError(
            f"dimension mismatch: {a.source} has d = {a.dim}, {b.source} has d = {b.dim}"
        )
    sa, sb = a.settings or {}, b.settings or {}
    if not sa or not sb:
        return sa or sb or None
    diff = [k for k in KEY_FIELDS if k in sa and k in sb and sa[k] != sb[k]]
    if diff:
        detail = "; ".join(f"{k}: {sa[k]!r} vs {sb[k]!r}" for k in diff)
        raise SettingsMismatchError(
            f"{a.source} and {b.source} were embedded with different settings ({detail}). "
            "Re-embed one side, or pass --allow-mismatch to compare anyway."
        )
    return sa


def cautions(background: EmbeddingSet, eval_set: EmbeddingSet) -> list[str]:
    """What makes a FAD value unreliable, as report notes (issue 12 item 13):

    * fewer embeddings than dimensions: the covariance is singular (rank <= n - 1) and the
      value is dominated by bias, not comparable with published numbers;
    * a covariance from a statistics file that is not positive semi-definite (a damaged or
      foreign file: every real covariance is PSD);
    * seeded random weights: the embeddings are not meaningful features.
    """
    out = []
    for s in (background, eval_set):
        d = s.dim or 0
        if s.n is not None and d and s.n <= d:
            out.append(
                f"caution: {s.source} has n = {s.n} embeddings for d = {d} dimensions: its "
                "covariance is singular and FAD is dominated by bias; not comparable with "
                f"published values (use well over {d} embeddings)"
            )
        if s.kind == "stats" and d:
            cov = np.asarray(s.stats.cov, dtype=np.float64)
            eig = np.linalg.eigvalsh((cov + cov.T) / 2)
            # Rounding a PSD matrix to float32 storage moves its eigenvalues by at most
            # ||E||_2 <= d * eps32 * max|eigenvalue|: anything below -tol is not rounding.
            tol = d * float(np.finfo(np.float32).eps) * max(float(np.abs(eig).max()), 1e-300)
            if eig[0] < -tol:
                out.append(
                    f"caution: the covariance in {s.source} is not positive semi-definite "
                    f"(smallest eigenvalue {eig[0]:.3g}); the file is damaged or not a "
                    "covariance, and this FAD is meaningless"
                )
    for s in (background, eval_set):
        settings = s.settings or {}
        if settings.get("pretrained") is False:
            out.append(
                f"caution: {s.source} was embedded with seeded random weights: NOT meaningful "
                "features, this FAD only checks the plumbing"
            )
            break
    return out


def _fad_terms(bg: EmbeddingSet, ev: EmbeddingSet) -> FrechetTerms:
    d = bg.dim or 0
    few = DATA_ROUTE_ROWS_PER_DIM * d
    if bg.has_embeddings and ev.has_embeddings and min(bg.n, ev.n) <= few:
        return frechet_terms_from_embeddings(bg.embeddings(), ev.embeddings())
    if ev.has_embeddings and ev.n <= few and not bg.has_embeddings:
        return PreparedReference.from_stats(bg.stats).terms_embeddings(ev.embeddings())
    if bg.has_embeddings and bg.n <= few and not ev.has_embeddings:
        t = PreparedReference.from_stats(ev.stats).terms_embeddings(bg.embeddings())
        # Swap so trace1 stays the background's (FD itself is symmetric).
        return replace(t, trace1=t.trace2, trace2=t.trace1)
    return frechet_terms_from_stats(bg.stats, ev.stats)


def compare_sets(
    background: EmbeddingSet,
    eval_set: EmbeddingSet,
    *,
    preset: str | None = None,
    allow_mismatch: bool = False,
    inf: bool = False,
    inf_steps: int = 25,
    inf_min_n: int = 500,
    inf_replace: bool = True,
    kid: bool = False,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    per_clip: bool = False,
    seed: int = 0,
) -> FadReport:
    """FAD of ``eval_set`` against ``background`` (+ FAD-inf, KID, per-clip FD on request).

    FAD-inf and per-clip FD need the eval embeddings; KID needs embeddings on both sides.
    KID uses torch-fidelity's settings; a subset larger than a set is shrunk to fit (with a
    note), as audioldm_eval and SpecVQGAN do.
    """
    notes: list[str] = []
    try:
        settings = check_comparable(background, eval_set)
    except SettingsMismatchError as exc:
        if not allow_mismatch:
            raise
        settings = background.settings or eval_set.settings
        notes.append(f"settings differ, compared anyway: {exc}")
    for s in (background, eval_set):
        if s.n is not None and s.n < 2:
            raise SetError(f"{s.source}: {s.n} embedding(s); FAD needs at least 2 per set")
    notes += cautions(background, eval_set)
    terms = _fad_terms(background, eval_set)
    report = FadReport(terms, background, eval_set, preset, settings, notes=notes)

    def need_eval(what: str) -> np.ndarray:
        if not eval_set.has_embeddings:
            raise SetError(f"{what} needs the eval embeddings; {eval_set.source} is statistics")
        return eval_set.embeddings()

    ref = None
    if inf or per_clip:
        ref = PreparedReference.from_stats(background.stats)
    if inf and eval_set.has_embeddings and (eval_set.n or 0) <= inf_min_n:
        notes.append(
            f"caution: FAD-inf not computed: it extrapolates FD(n) over n = {inf_min_n}..N and "
            f"{eval_set.source} has only N = {eval_set.n} embeddings (lower --inf-min-n or "
            "embed more audio)"
        )
        inf = False
    if inf:
        report.fad_inf = fad_inf(
            ref,
            need_eval("FAD-inf"),
            steps=inf_steps,
            min_n=inf_min_n,
            seed=seed,
            replace=inf_replace,
        )
        if report.fad_inf.value < 0:
            notes.append(
                f"caution: FAD-inf {report.fad_inf.value:.4g} < 0: the 1/n fit extrapolated "
                "below zero (sets nearly identical, or too few points); read it as about 0"
            )
    if per_clip:
        need_eval("per-clip FAD")
        rows = []
        for name, x in (eval_set.clips or {}).items():
            fd = ref.terms_embeddings(x).value if x.shape[0] >= 2 else math.nan
            rows.append(ClipScore(name, fd, int(x.shape[0])))
        rows.sort(key=lambda c: (not math.isfinite(c.fd), abs(c.fd) if math.isfinite(c.fd) else 0))
        report.per_clip = rows
        skipped = sum(1 for c in rows if not math.isfinite(c.fd))
        if skipped:
            notes.append(f"{skipped} clip(s) with fewer than 2 embeddings have no per-clip FD")
    if kid:
        if not background.has_embeddings:
            raise SetError(f"KID needs background embeddings; {background.source} is statistics")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report.kid = kernel_inception_distance(
                need_eval("KID"),
                background.embeddings(),
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                small_sets="clamp",
            )
        notes += [str(w.message) for w in caught]
    return report


__all__ = ["ClipScore", "FadReport", "SettingsMismatchError", "check_comparable", "compare_sets"]
