"""Shared validation for converters: a mapped state dict against the shapes a model expects."""

from __future__ import annotations

from collections.abc import Mapping


def check_state_shapes(
    mapped: Mapping[str, object], expected: Mapping[str, tuple[int, ...]], what: str
) -> None:
    """Raise ``ValueError`` listing missing, unexpected and mis-shaped entries (8 of each)."""
    missing = [k for k in expected if k not in mapped]
    unexpected = sorted(k for k in mapped if k not in expected)
    bad = [
        f"{k} has shape {tuple(mapped[k].shape)}, expected {expected[k]}"
        for k in expected
        if k in mapped and tuple(mapped[k].shape) != expected[k]
    ]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            more = " ..." if len(unexpected) > 8 else ""
            parts.append(f"unexpected {', '.join(unexpected[:8])}{more}")
        parts += bad[:8]
        raise ValueError(f"{what} parameters: " + "; ".join(parts))
