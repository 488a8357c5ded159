"""Fixtures shared by the test modules (helpers live in jobkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobkit import make_job


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A valid job folder."""
    return make_job(tmp_path / "job")
