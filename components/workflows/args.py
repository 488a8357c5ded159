"""Checks of workflow constructor arguments, with NVFlare's wording."""

from __future__ import annotations

from typing import Any, cast


def check_number(name: str, value: Any, *, positive: bool = False, integer: bool = False) -> None:
    """Raise TypeError / ValueError unless ``value`` is a (positive, or non-negative) number (an int if asked)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'} but got {type(value).__name__}")
    amount = cast(float, value)
    if amount < 0 or (positive and amount == 0):
        raise ValueError(f"{name} must be {'greater than 0' if positive else 'at least 0'}, got {value}")
