"""What every pipe shares: the two modes, and names for the threads a pipe starts."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """Which side of a pipe an object is: the client engine is usually PASSIVE, the training script ACTIVE."""

    ACTIVE = "ACTIVE"
    PASSIVE = "PASSIVE"


def parse_mode(mode: str | Mode) -> Mode:
    """Return ``mode`` as a :class:`Mode` (case-insensitive).

    Raises:
        ValueError: for anything but ACTIVE or PASSIVE.
    """
    try:
        return Mode(str(mode).upper())
    except ValueError:
        raise ValueError(f"pipe mode must be 'ACTIVE' or 'PASSIVE', got {mode!r}") from None


def peer_mode(mode: Mode) -> Mode:
    """The mode of the other side."""
    return Mode.PASSIVE if mode is Mode.ACTIVE else Mode.ACTIVE


def thread_name(site: str, what: str) -> str:
    """Name a pipe thread ``"<site>:<what>"`` so the simulator files its log records under the site."""
    return f"{site}:{what}" if site else f"flruntime:{what}"
