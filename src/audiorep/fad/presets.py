"""Embedding presets for ``audiorep fad``: which VGGish pipeline turns audio into embeddings.

FAD numbers are only comparable when both sets, and the paper you compare with, used the same
windowing, loudness normalisation and output layer. The presets name the three in use:

* ``vggish`` - audiorep's exact reference pipeline: 0.96 s examples without overlap, no
  normalisation, the pre-activation 128-d output (TF VGGish today; also frechet-audio-distance
  with its defaults ``use_pca=False, use_activation=False``).
* ``google`` - google-research ``frechet_audio_distance``: each clip divided by
  ``max(0.1, max sample)``, whole 1 s windows every 0.5 s, one 0.96 s example per window,
  pre-activation output.
* ``torchvggish`` - torchvggish's default model: 0.96 s examples, with the final ReLU.

None of them applies PCA: FAD is computed on the raw 128-d embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiorep.frontends.vggish import GOOGLE_FAD_WINDOWING, VGGISH_WINDOWING, Windowing


@dataclass(frozen=True)
class FadPreset:
    """A named embedding pipeline: windowing and whether the final ReLU is applied."""

    name: str
    windowing: Windowing
    final_relu: bool
    description: str

    def with_hop(self, hop_seconds: float | None) -> FadPreset:
        """This preset with another example hop (``None`` keeps the preset's)."""
        if hop_seconds is None:
            return self
        w = self.windowing
        windowing = Windowing.from_hop_seconds(
            hop_seconds, window_samples=w.window_samples, peak_normalize=w.peak_normalize
        )
        return FadPreset(self.name, windowing, self.final_relu, self.description)


PRESETS: dict[str, FadPreset] = {
    "vggish": FadPreset(
        "vggish",
        VGGISH_WINDOWING,
        final_relu=False,
        description="audiorep exact: 0.96 s examples, no overlap, no normalisation, pre-activation",
    ),
    "google": FadPreset(
        "google",
        GOOGLE_FAD_WINDOWING,
        final_relu=False,
        description="google-research FAD: peak-normalised clips, 1 s windows every 0.5 s, "
        "pre-activation",
    ),
    "torchvggish": FadPreset(
        "torchvggish",
        VGGISH_WINDOWING,
        final_relu=True,
        description="torchvggish: 0.96 s examples, no overlap, final ReLU",
    ),
}


def get_preset(name: str) -> FadPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


__all__ = ["FadPreset", "PRESETS", "get_preset"]
