"""An ensemble of heads: the mean of the members' probabilities.

``EnsembleConfig(members=[{"model": name, "config": {...}}, ...])`` names each member by its
registry name and config dict (JSON round trip through ``to_dict`` / ``from_dict`` like every
head config). Members are built with ``audiorep.heads.build_head``; ``audiorep.heads``
installs that builder here with :func:`set_member_builder` (this module cannot import the
package that imports it: ``tests/test_layering.py`` rejects import cycles, function-level
imports included).

A member config without ``num_classes`` / ``feature_size`` takes the ensemble's; one that
sets a different value is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiorep.heads._common import Head, HeadConfig

__all__ = ["EnsembleConfig", "EnsembleModel", "set_member_builder"]

MemberBuilder = Callable[[str, dict[str, Any]], Head]
_builder: MemberBuilder | None = None


def set_member_builder(build: MemberBuilder) -> None:
    """Install ``build(name, config_dict) -> Head`` (``audiorep.heads`` installs
    ``build_head`` when it is imported)."""
    global _builder
    _builder = build


@dataclasses.dataclass
class EnsembleConfig(HeadConfig):
    """EnsembleModel.

    Fields:
        members: one ``{"model": registry name, "config": {field: value}}`` per member (at
            least one); ``config`` may be partial (the member's defaults fill the rest).
    """

    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _member_spec(i: int, spec: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or set(spec) - {"model", "config"} or "model" not in spec:
        raise ValueError(
            f"EnsembleConfig.members[{i}] must be a dict {{'model': name, 'config': {{...}}}}, "
            f"got {spec!r}"
        )
    name, config = spec["model"], spec.get("config", {})
    if not isinstance(name, str) or not isinstance(config, dict):
        raise ValueError(
            f"EnsembleConfig.members[{i}]: 'model' must be a str and 'config' a dict, "
            f"got {name!r} and {type(config).__name__}"
        )
    return name, config


def _log_mean_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


class EnsembleModel(Head):
    """Mean of the members' probabilities: ``p = mean_k p_k``, ``(B, T, D)``, ``(B,)`` ->
    ``{"predictions", "logits"}`` each ``(B, C)``.

    ``logits = log p - log(1 - p)`` computed as ``logmeanexp_k logsigmoid(l_k) -
    logmeanexp_k logsigmoid(-l_k)`` from the members' logits ``l_k`` (finite where ``p``
    rounds to 0 or 1). Members run in the ensemble's train / eval mode. State-dict keys
    ``members.<i>.<member key>``; ``regularization_loss()`` is the sum of the members'.
    """

    name = "ensemble"
    config_class = EnsembleConfig

    def __init__(self, config: EnsembleConfig | None = None) -> None:
        config = config or EnsembleConfig()
        super().__init__(config)
        if not config.members:
            raise ValueError("EnsembleConfig.members is empty: an ensemble needs >= 1 member")
        if _builder is None:  # pragma: no cover - audiorep.heads installs it on import
            raise RuntimeError("no member builder: import audiorep.heads first")
        members = []
        for i, spec in enumerate(config.members):
            name, member_config = _member_spec(i, spec)
            shared = {"num_classes": config.num_classes, "feature_size": config.feature_size}
            for key, value in shared.items():
                if key in member_config and member_config[key] != value:
                    raise ValueError(
                        f"EnsembleConfig.members[{i}] ({name}) has {key}={member_config[key]}, "
                        f"the ensemble {value}"
                    )
            members.append(_builder(name, {**member_config, **shared}))
        self.members = nn.ModuleList(members)

    @classmethod
    def from_heads(cls, heads: Sequence[Head]) -> EnsembleModel:
        """An ensemble of trained ``heads`` (their configs and a copy of their weights and
        buffers); all must share ``num_classes`` and ``feature_size``."""
        if not heads:
            raise ValueError("from_heads needs at least one head")
        first = heads[0].config
        for i, head in enumerate(heads):
            for key in ("num_classes", "feature_size"):
                if getattr(head.config, key) != getattr(first, key):
                    raise ValueError(
                        f"heads[{i}] has {key}={getattr(head.config, key)}, "
                        f"heads[0] {getattr(first, key)}"
                    )
        config = EnsembleConfig(
            num_classes=first.num_classes,
            feature_size=first.feature_size,
            members=[{"model": h.name, "config": h.config.to_dict()} for h in heads],
        )
        model = cls(config)
        for member, head in zip(model.members, heads, strict=True):
            member.load_state_dict(head.state_dict())
        param = next(heads[0].parameters(), None)
        return model if param is None else model.to(param.device)

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions", "logits"}`` (B, C)."""
        probs, logits = [], []
        for i, member in enumerate(self.members):
            out = member(frames, num_frames)
            if "logits" not in out:
                raise ValueError(f"ensemble member {i} ({member.name}) returns no 'logits'")
            probs.append(out["predictions"])
            logits.append(out["logits"])
        p = torch.stack(probs, dim=-1)  # (B, C, K)
        z = torch.stack(logits, dim=-1)
        log_p = _log_mean_exp(F.logsigmoid(z), dim=-1)
        log_q = _log_mean_exp(F.logsigmoid(-z), dim=-1)
        return {"predictions": p.mean(dim=-1), "logits": log_p - log_q}

    def regularization_loss(self) -> torch.Tensor:
        """The sum of the members' penalties (a scalar)."""
        return sum((m.regularization_loss() for m in self.members[1:]),
                   self.members[0].regularization_loss())  # fmt: skip
