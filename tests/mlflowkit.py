"""A real ``mlflow server`` process for tests: start it on a free 127.0.0.1 port, stop it."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, store: Path, log: Path) -> subprocess.Popen:
    mlflow = Path(sys.executable).with_name("mlflow")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{store}",
                "--default-artifact-root",
                (store.parent / "artifacts").as_uri(),
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=60)
