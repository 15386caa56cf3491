"""Named intermediate activations ("taps") shared by every backbone.

A backbone that derives from :class:`TappedModel` is an ordered chain of named stages. One
call of :meth:`TappedModel.forward_taps` runs the chain once and returns the outputs of the
requested stages by name. Nothing is registered on the modules (no hooks), so the mechanism is
safe under autograd, ``torch.inference_mode`` and ``torch.compile``, and leaves nothing behind.
Later features (deep feature losses, multi-layer fusion, LPAPS) are built on this one method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


class TappedModel(nn.Module):
    """Base class for backbones whose forward pass is a chain of named stages.

    Subclasses implement :meth:`stages`, which yields ``(name, callable)`` pairs in execution
    order; each callable maps the previous stage's output to its own output.
    """

    def stages(self) -> Iterable[tuple[str, nn.Module]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def tap_names(self) -> tuple[str, ...]:
        """Names accepted by :meth:`forward_taps`, in execution order."""
        return tuple(name for name, _ in self.stages())

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Bring the model's input to the first stage's layout (identity by default)."""
        return x

    def forward_taps(
        self, x: torch.Tensor, taps: Sequence[str] | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the model once and return the named activations.

        Args:
            x: the model input (see the subclass's ``forward``).
            taps: names from :attr:`tap_names`; ``None`` returns every tap. The chain stops
                after the last requested tap, so asking only for early layers is cheap.

        Returns:
            ``{name: tensor}`` in execution order, each tensor in the layout of the stage that
            produced it (torch NCHW for convolutional stages).
        """
        names = self.tap_names
        if taps is None:
            wanted = list(names)
        else:
            wanted = [taps] if isinstance(taps, str) else list(taps)
            unknown = [t for t in wanted if t not in names]
            if unknown:
                raise KeyError(
                    f"unknown tap(s) {unknown} for {type(self).__name__}; "
                    f"available taps: {', '.join(names)}"
                )
        remaining = set(wanted)
        out: dict[str, torch.Tensor] = {}
        h = self.prepare_input(x)
        for name, stage in self.stages():
            if not remaining:
                break
            h = stage(h)
            if name in remaining:
                out[name] = h
                remaining.discard(name)
        return {name: out[name] for name in names if name in out}
