"""An exponential moving average of a model's weights (Polyak averaging), for evaluation.

The average follows the trained weights with ``avg = d * avg + (1 - d) * w`` after every update;
evaluating with it instead of the last weights smooths out the noise of the final steps (and of
mixup), usually worth a little validation accuracy for free. Buffers (batch-norm statistics) are
copied, not averaged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``model``'s parameters; its buffers are copied as they are.

    ``decay`` is the per-update factor ``d``; with ``warmup`` the factor is
    ``min(d, (1 + n) / (10 + n))`` after ``n`` updates, so the start (random weights) is
    forgotten quickly. :meth:`state_dict` / :meth:`load_state_dict` checkpoint it (tensors keyed
    like the model's state dict, plus ``num_updates``).
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def factor(self) -> float:
        """The ``d`` the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights in (call after every optimiser step)."""
        d = self.factor()
        params = [(self.shadow[k], p.detach()) for k, p in model.named_parameters()]
        if params:
            torch._foreach_lerp_([a for a, _ in params], [p for _, p in params], 1.0 - d)
        for name, buf in model.named_buffers():  # running statistics follow the model
            self.shadow[name].copy_(buf)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. an export copy)."""
        model.load_state_dict(self.shadow)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Swap the averaged weights into ``model`` for the ``with`` block, then put the
        trained weights back."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged tensors (``ema.<key>``) and ``ema_num_updates`` as a 0-d int64."""
        out = {f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.shadow.items()}
        out["ema_num_updates"] = torch.tensor(self.num_updates, dtype=torch.int64)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.shadow if f"ema.{k}" not in state]
        if missing or "ema_num_updates" not in state:
            raise ValueError(f"EMA state lacks {missing or ['ema_num_updates']}")
        for k, v in self.shadow.items():
            v.copy_(state[f"ema.{k}"])
        self.num_updates = int(state["ema_num_updates"])
