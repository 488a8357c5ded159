"""Fixtures shared by the test modules (helpers live in jobkit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jobkit import make_job
from mlflowkit import free_port, start_server, stop_server


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A valid job folder."""
    return make_job(tmp_path / "job")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free port (SQLite store in ``tmp_path``); yields its URI."""
    port, store = free_port(), tmp_path / "mlflow-store" / "mlflow.db"
    store.parent.mkdir()
    server = start_server(port, store, tmp_path / "mlflow-server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)
