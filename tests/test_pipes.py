import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from flruntime.pipes import CellPipe, FilePipe, MemoryPipe, PipeEndpoint, SocketPipe, pipe_from_spec
from flruntime.pipes.file import pack, unpack
from flruntime.pipes.tcp import write_frame


def wait_for(pipe, timeout=10.0):
    message = pipe.receive(timeout)
    assert message is not None, "no message within the safety timeout"
    return message


# --- FilePipe ----------------------------------------------------------------------------------------


@pytest.fixture
def file_pair(tmp_path):
    passive = FilePipe("PASSIVE", str(tmp_path / "pipe"), file_check_interval=0.01)
    passive.open("task")
    active = pipe_from_spec(passive.export())
    active.open("task")
    yield passive, active
    passive.close()
    active.close()


def test_file_pipe_both_directions_in_order(file_pair):
    passive, active = file_pair
    for i in range(5):
        assert passive.send("task", f"t{i}".encode())
    assert active.send("result", b"\x00\x01binary")
    assert [wait_for(active) for _ in range(5)] == [("task", f"t{i}".encode()) for i in range(5)]
    assert wait_for(passive) == ("result", b"\x00\x01binary")
    assert passive.receive(0.05) is None and active.receive(0.05) is None


def test_file_pipe_layout_and_atomic_files(file_pair, tmp_path):
    passive, _ = file_pair
    passive.send("task", b"x" * 100_000)
    files = os.listdir(tmp_path / "pipe" / "task" / "to_active")
    assert len(files) == 1 and files[0].endswith(".msg") and not files[0].startswith(".")
    assert os.listdir(tmp_path / "pipe" / "task" / "to_passive") == []


def test_file_pipe_channels_are_separate(tmp_path):
    a = FilePipe("ACTIVE", str(tmp_path), file_check_interval=0.01)
    p_task, p_metric = FilePipe("PASSIVE", str(tmp_path)), FilePipe("PASSIVE", str(tmp_path))
    a.open("metric")
    p_task.open("task")
    p_metric.open("metric")
    a.send("log", b"1")
    assert p_task.receive(0.05) is None
    assert wait_for(p_metric) == ("log", b"1")


def test_file_pipe_clear_drops_waiting_messages(file_pair):
    passive, active = file_pair
    passive.send("task", b"old")
    active.send("result", b"old")
    passive.clear()
    assert active.receive(0.05) is None and passive.receive(0.05) is None


def test_file_pipe_export_flips_mode_and_uses_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = FilePipe("passive", "rel/pipe", 0.2).export()
    assert spec == {
        "CLASS_NAME": "FilePipe",
        "ARG": {"mode": "ACTIVE", "root_path": str(tmp_path / "rel" / "pipe"), "file_check_interval": 0.2},
    }


def test_file_pipe_messages_round_trip_and_bad_files_are_refused():
    assert unpack(pack("tøpic", b"payload")) == ("tøpic", b"payload")
    with pytest.raises(ValueError, match="bad magic"):
        unpack(b"nonsense")


def test_pipe_modes_are_checked():
    with pytest.raises(ValueError, match="pipe mode must be 'ACTIVE' or 'PASSIVE', got 'SIDEWAYS'"):
        FilePipe("SIDEWAYS", "/tmp/x")


@pytest.mark.slow
def test_file_pipe_between_two_processes(file_pair):
    passive, active = file_pair
    active.close()
    child = textwrap.dedent(
        f"""
        from flruntime.pipes import pipe_from_spec
        pipe = pipe_from_spec({json.dumps(passive.export())})
        pipe.open("task")
        topic, payload = pipe.receive(30)
        pipe.send("echo", payload[::-1])
        """
    )
    assert passive.send("ping", b"abc")
    proc = subprocess.run([sys.executable, "-c", child], timeout=60, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert wait_for(passive) == ("echo", b"cba")


# --- SocketPipe / CellPipe ------------------------------------------------------------------------------


@pytest.fixture
def socket_pair():
    passive = SocketPipe("PASSIVE")
    passive.open("task")
    active = pipe_from_spec(passive.export())
    active.open("task")
    yield passive, active
    active.close()
    passive.close()


def test_socket_pipe_both_directions(socket_pair):
    passive, active = socket_pair
    assert passive.send("task", b"hello", timeout=10)
    assert wait_for(active) == ("task", b"hello")
    big = os.urandom(8 * 1024 * 1024)
    assert active.send("result", big, timeout=10)
    assert active.send("bye", b"", timeout=10)
    assert wait_for(passive) == ("result", big)
    assert wait_for(passive) == ("bye", b"")


def test_socket_pipe_listens_on_loopback_with_an_ephemeral_port(socket_pair):
    passive, _ = socket_pair
    spec = passive.export()
    assert spec["CLASS_NAME"] == "SocketPipe"
    assert spec["ARG"]["mode"] == "ACTIVE" and spec["ARG"]["host"] == "127.0.0.1"
    assert spec["ARG"]["port"] > 0 and len(spec["ARG"]["secret"]) == 32


def test_socket_pipe_peer_closed_when_the_other_side_goes(socket_pair):
    passive, active = socket_pair
    assert passive.send("task", b"x", timeout=10)
    wait_for(active)
    active.close()
    deadline = time.monotonic() + 10
    while not passive.peer_closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert passive.peer_closed
    assert not passive.send("task", b"y", timeout=0)


def test_socket_pipe_accepts_a_new_peer_after_the_old_one_left(socket_pair):
    passive, active = socket_pair
    active.close()
    again = pipe_from_spec(passive.export())
    again.open("task")
    try:
        assert passive.send("task", b"second", timeout=10)
        assert wait_for(again) == ("task", b"second")
        assert not passive.peer_closed
    finally:
        again.close()


@pytest.mark.parametrize(
    ("change", "message"), [({"secret": "0" * 32}, "refused"), ({}, "refused")], ids=["wrong-secret", "wrong-channel"]
)
def test_socket_pipe_refuses_strangers(change, message):
    passive = SocketPipe("PASSIVE")
    passive.open("task")
    try:
        spec = passive.export()
        spec["ARG"].update(change, connect_timeout=2)
        intruder = pipe_from_spec(spec)
        with pytest.raises(ConnectionError, match=message):
            intruder.open("task" if change else "metric")
        assert not passive.send("task", b"secret data", timeout=0)
    finally:
        passive.close()


def closed_by_peer(sock):
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_socket_pipe_refuses_bytes_that_are_not_frames():
    passive = SocketPipe("PASSIVE")
    passive.open("task")
    try:
        with socket.create_connection(("127.0.0.1", passive.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert closed_by_peer(raw)
        with socket.create_connection(("127.0.0.1", passive.port), timeout=5) as raw:
            write_frame(raw, "task", b"no auth first")
            assert closed_by_peer(raw)
    finally:
        passive.close()


def test_active_socket_pipe_needs_a_port():
    with pytest.raises(ValueError, match="needs the port"):
        SocketPipe("ACTIVE")


def test_export_before_open_is_an_error():
    with pytest.raises(RuntimeError, match="open a PASSIVE socket pipe before exporting it"):
        SocketPipe("PASSIVE").export()


def test_cell_pipe_takes_nvflare_args_and_exports_a_socket_pipe():
    pipe = CellPipe(mode="PASSIVE", site_name="site-1", token="job", root_url="", secure_mode=True, workspace_dir="/w")
    pipe.open("task")
    try:
        spec = pipe.export()
        assert spec["CLASS_NAME"] == "SocketPipe" and spec["ARG"]["mode"] == "ACTIVE"
        peer = pipe_from_spec(spec)
        peer.open("task")
        try:
            assert peer.send("result", b"r", timeout=10)
            assert wait_for(pipe) == ("result", b"r")
        finally:
            peer.close()
    finally:
        pipe.close()


def test_cell_pipe_active_mode_is_refused():
    with pytest.raises(ValueError, match="CellPipe supports only mode PASSIVE"):
        CellPipe("ACTIVE", "site-1", "job")


def test_pipe_from_spec_builds_only_known_classes():
    with pytest.raises(ValueError, match=r"cannot build pipe class 'os.system' .*FilePipe, SocketPipe"):
        pipe_from_spec({"CLASS_NAME": "os.system", "ARG": {}})
    with pytest.raises(ValueError, match="bad arguments for pipe 'FilePipe'"):
        pipe_from_spec({"CLASS_NAME": "FilePipe", "ARG": {"nope": 1}})
    pipe = pipe_from_spec(
        {"CLASS_NAME": "nvflare.fuel.utils.pipe.file_pipe.FilePipe", "ARG": {"mode": "ACTIVE", "root_path": "/tmp"}}
    )
    assert isinstance(pipe, FilePipe)


# --- MemoryPipe --------------------------------------------------------------------------------------------


def test_memory_pipe_connects_sides_with_the_same_token():
    active, passive, other = MemoryPipe("job"), MemoryPipe("job", mode="PASSIVE"), MemoryPipe("job2", "PASSIVE")
    for p in (active, passive, other):
        p.open("metric")
    try:
        assert active.send("log", b"1")
        assert passive.receive(1) == ("log", b"1")
        assert other.receive(0.01) is None
        assert passive.send("hb", b"")
        assert active.receive(1) == ("hb", b"")
    finally:
        for p in (active, passive, other):
            p.close()


def test_memory_pipes_of_different_sites_stay_apart():
    class Ctx:
        def __init__(self, site):
            self.site = site

    a1, p1, p2 = (
        MemoryPipe("simulate_job"),
        MemoryPipe("simulate_job", "PASSIVE"),
        MemoryPipe("simulate_job", "PASSIVE"),
    )
    a1.setup(Ctx("site-1"))
    p1.setup(Ctx("site-1"))
    p2.setup(Ctx("site-2"))
    for p in (a1, p1, p2):
        p.open()
    try:
        a1.send("log", b"mine")
        assert p2.receive(0.01) is None
        assert p1.receive(1) == ("log", b"mine")
    finally:
        for p in (a1, p1, p2):
            p.close()


def test_memory_pipe_cannot_cross_processes():
    with pytest.raises(NotImplementedError, match="MemoryPipe cannot connect a separate process"):
        MemoryPipe("t").export()


# --- PipeEndpoint ------------------------------------------------------------------------------------------


def test_endpoint_heartbeats_both_ways_and_hides_them(socket_pair):
    passive, active = socket_pair
    acks = []
    left = PipeEndpoint(passive, read_interval=0.01, heartbeat_interval=0.02)
    right = PipeEndpoint(active, read_interval=0.01, heartbeat_interval=0.02, handlers={"ack": acks.append})
    left.start()
    right.start()
    try:
        time.sleep(0.2)
        assert left.silence() < 5 and right.silence() < 5
        assert left.send("ack", b"t1") and left.send("task", b"payload")
        assert right.get(10) == ("task", b"payload")
        assert acks == [b"t1"]
        assert right.get(0.05) is None  # heartbeats never surface
        right.close()
        active.close()
        deadline = time.monotonic() + 10
        while not left.peer_closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert left.peer_closed
    finally:
        left.close()
        right.close()


def test_endpoint_silence_grows_without_a_peer(tmp_path):
    pipe = FilePipe("PASSIVE", str(tmp_path), file_check_interval=0.01)
    pipe.open()
    endpoint = PipeEndpoint(pipe, read_interval=0.01, heartbeat_interval=0.01)
    endpoint.start()
    try:
        time.sleep(0.1)
        assert endpoint.silence() >= 0.1
        endpoint.reset()
        assert endpoint.silence() < 0.1
    finally:
        endpoint.close()
        pipe.close()
