"""The admin console: its commands over a stand-in session, then the real `flruntime admin` on a terminal.

The first half drives :class:`AdminConsole` with a scripted session (tables, filters, one-line errors,
completion). The second half (slow) spawns `python -m flruntime admin --kit KIT` in a pseudo-terminal with
pexpect against a real federation (server and clients as processes, gRPC with mutual TLS on 127.0.0.1) and
types into it as an admin would.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from flruntime.errors import AuthError, TransportError, UsageError
from flruntime.federation.console import HISTORY_FILE, AdminConsole, jobs_table, table
from flruntime.federation.kit import Kit
from tests.fedkit import Federation, np_job

ADMIN = "admin@acme.org"


# ---- the console over a stand-in session ---------------------------------------------------------------


def _kit(root: Path) -> Kit:
    return Kit(root, ADMIN, "admin", "acme", "project_admin", "proj", "server", "localhost:8003", 8003, b"", b"", b"")


def _record(job_id: str, name: str, status: str, submit_time: float, duration: float | None = None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": name,
        "submitter": ADMIN if job_id != "c3" else "lead@acme.org",
        "submit_time": submit_time,
        "status": status,
        "sites": ["site-1", "site-2"],
        "start_time": None,
        "end_time": None,
        "duration": duration,
        "error": "",
        "rounds": 0,
    }


class FakeSession:
    """Answers as the server would; records what it was asked."""

    def __init__(self, root: Path) -> None:
        self.kit = _kit(root)
        self.calls: list[tuple[Any, ...]] = []
        self.online = ["site-1", "site-2"]
        self.jobs = [
            _record("b2", "cifar10", "RUNNING", 1_700_000_100.0, 65.0),
            _record("a1", "hello-numpy", "FINISHED:COMPLETED", 1_700_000_000.0, 3723.4),
            _record("c3", "hello-pt", "SUBMITTED", 1_700_000_200.0),
        ]

    def submit(self, job_dir: str | Path) -> str:
        self.calls.append(("submit", Path(job_dir)))
        return "d4"

    def list_jobs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return [j for j in self.jobs if job_id in (None, j["job_id"])]

    def _known(self, job_id: str) -> None:
        if job_id not in {j["job_id"] for j in self.jobs}:
            raise UsageError(f"no job with id {job_id}")

    def abort(self, job_id: str) -> None:
        self._known(job_id)
        self.calls.append(("abort", job_id))

    def download(self, job_id: str, dest: str | Path) -> Path:
        self._known(job_id)
        folder = Path(dest) / job_id
        folder.mkdir(parents=True)
        return folder

    def clone(self, job_id: str) -> str:
        self._known(job_id)
        return "e5"

    def resume(self, job_id: str) -> str:
        self._known(job_id)
        return "f6"

    def delete(self, job_id: str) -> None:
        raise AuthError(f"admin {ADMIN} (member) may not run delete_job")

    def check_status(self, target: str = "server", sites: list[str] | None = None) -> dict[str, Any]:
        self.calls.append(("check_status", target, sites))
        clients = [
            {"name": "site-1", "org": "acme", "online": True, "last_seen_s": 0.4, "jobs": ["b2"]},
            {"name": "site-9", "org": "beta", "online": False, "last_seen_s": 93.25, "jobs": []},
        ]
        if target == "client":
            return {"clients": [c for c in clients if not sites or c["name"] in sites]}
        return {
            "server": "server",
            "project": "proj",
            "status": "started",
            "running_jobs": [{"job_id": "b2", "name": "cifar10", "status": "RUNNING", "rounds": 3}],
            "clients": clients,
        }

    def list_sites(self) -> list[dict[str, Any]]:
        return [
            {"name": "server", "type": "server", "org": "acme", "online": True, "last_seen_s": None},
            {"name": "site-1", "type": "client", "org": "acme", "online": True, "last_seen_s": 0.5, "version": "0.1.0"},
            {"name": "site-7", "type": "client", "org": "acme", "online": False, "last_seen_s": None},
        ]

    def show_errors(self, job_id: str) -> dict[str, list[str]]:
        self._known(job_id)
        if job_id == "a1":
            return {"server": [], "site-1": []}
        return {"server": [], "site-2": ["ERROR boom", "ValueError: bad shape"]}

    def show_stats(self, job_id: str) -> dict[str, Any]:
        self._known(job_id)
        return {
            "server": {"rounds": 3, "status": "RUNNING", "duration_s": 65.04321, "sites": ["site-1", "site-2"]},
            "site-1": {"cpu_percent": [float(i) for i in range(10)], "last": {"time": 1_700_000_000.0, "rss": 512.5}},
        }

    def shutdown_clients(self, sites: list[str] | None = None) -> list[str]:
        self.calls.append(("shutdown", sites))
        return [s for s in sites or ["site-1", "site-2"] if s in self.online]

    def restart_clients(self, sites: list[str] | None = None) -> list[str]:
        raise TransportError("cannot reach the server at localhost:8003 (UNAVAILABLE: Connection refused)")


@pytest.fixture
def fake(tmp_path: Path) -> FakeSession:
    (tmp_path / "kit").mkdir()
    return FakeSession(tmp_path / "kit")


def run(console: AdminConsole, line: str) -> tuple[bool, str]:
    out = console.stdout
    assert isinstance(out, io.StringIO)
    out.seek(0)
    out.truncate()
    ok = console.run_command(line)
    return ok, out.getvalue()


@pytest.fixture
def console(fake: FakeSession, tmp_path: Path) -> AdminConsole:
    c = AdminConsole(fake, stdout=io.StringIO(), cwd=tmp_path)
    assert c.login() == f"Logged into server at localhost:8003 as {ADMIN} (project_admin)"
    return c


def test_table_is_nvflare_style():
    assert table(["A", "NAME"], [["x", "y"], ["long", ""]]).splitlines() == [
        "---------------",
        "| A    | NAME |",
        "---------------",
        "| x    | y    |",
        "| long |      |",
        "---------------",
    ]


def test_list_jobs_prints_the_table_oldest_first(console: AdminConsole):
    ok, out = run(console, "list_jobs")
    lines = out.splitlines()
    assert ok
    assert re.fullmatch(r"\| JOB ID \| NAME +\| STATUS +\| SUBMIT TIME +\| RUN DURATION \|", lines[1])
    assert [line.split("|")[1].strip() for line in lines[3:6]] == ["a1", "b2", "c3"]
    assert "| 1:02:03      |" in lines[3] and "| 0:01:05      |" in lines[4]
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000.0)) in lines[3]
    assert out == jobs_table(sorted(console.session.list_jobs(), key=lambda r: r["submit_time"])) + "\n"


@pytest.mark.parametrize(
    ("line", "ids"),
    [
        ("list_jobs -r", ["c3", "b2", "a1"]),
        ("list_jobs -m 2", ["a1", "b2"]),
        ("list_jobs -r -m 1", ["c3"]),
        ("list_jobs -n hello", ["a1", "c3"]),
        ("list_jobs -n hello-p", ["c3"]),
        ("list_jobs -u", ["a1", "b2"]),
        ("list_jobs b", ["b2"]),
    ],
    ids=["reverse", "max", "reverse-max", "name-prefix", "longer-prefix", "mine", "id-prefix"],
)
def test_list_jobs_options(console: AdminConsole, line: str, ids: list[str]):
    ok, out = run(console, line)
    assert ok
    assert [row.split("|")[1].strip() for row in out.splitlines()[3:-1]] == ids


def test_list_jobs_details_prints_whole_records(console: AdminConsole):
    ok, out = run(console, "list_jobs -d -n cifar")
    assert ok and '"job_id": "b2"' in out and '"submitter": "admin@acme.org"' in out and '"rounds": 0' in out


def test_list_jobs_with_nothing_to_show(console: AdminConsole):
    assert run(console, "list_jobs -n nope") == (True, "No jobs match.\n")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("list_jobs -m x", "Error: list_jobs: argument -m: invalid int value: 'x' (usage: list_jobs [-n NAME_PREFIX]"),
        ("list_jobs -m 0", "Error: list_jobs: -m N needs N of at least 1"),
        ("list_jobs --bogus", "Error: list_jobs: unrecognized arguments: --bogus"),
        ("abort_job", "Error: abort_job: the following arguments are required: JOB_ID (usage: abort_job JOB_ID)"),
        ("abort_job zz", "Error: no job with id zz"),
        ("delete_job a1", "Error: admin admin@acme.org (member) may not run delete_job"),
        ("restart client", "Error: cannot reach the server at localhost:8003 (UNAVAILABLE: Connection refused)"),
        ("check_status nowhere", "Error: check_status: argument server|client: invalid choice: 'nowhere'"),
        ("check_status server site-1", "Error: check_status: server takes no site names"),
        ("shutdown server", "Error: shutdown: argument client: invalid choice: 'server'"),
        ("submit_job 'unclosed", "Error: submit_job: No closing quotation"),
        ("frobnicate now", "Error: unknown command 'frobnicate' (type help to list the commands)"),
        ("help frobnicate", "Error: help: no command 'frobnicate'"),
    ],
    ids=[
        "not-an-int",
        "max-zero",
        "unknown-option",
        "missing-id",
        "unknown-job",
        "refused-by-role",
        "server-gone",
        "bad-target",
        "server-with-sites",
        "shutdown-server",
        "unclosed-quote",
        "unknown-command",
        "help-unknown",
    ],
)
def test_a_mistake_is_one_line_and_the_console_goes_on(console: AdminConsole, line: str, error: str):
    ok, out = run(console, line)
    assert not ok
    assert len(out.splitlines()) == 1 and out.startswith(error), out
    assert run(console, "list_jobs -m 1")[0]


def test_an_unexpected_exception_is_one_line_too(console: AdminConsole, fake: FakeSession):
    def broken(job_id: str) -> None:
        raise KeyError("job_id")

    fake.abort = broken  # type: ignore[method-assign]
    ok, out = run(console, "abort_job a1")
    assert (ok, out) == (False, "Error: abort_job: internal error: KeyError: 'job_id'\n")


def test_submit_job_looks_in_transfer_first_then_the_current_folder(console: AdminConsole, fake, tmp_path: Path):
    (tmp_path / "kit" / "transfer" / "both").mkdir(parents=True)
    (tmp_path / "both").mkdir()
    (tmp_path / "here").mkdir()
    assert run(console, "submit_job both") == (True, "Submitted job: d4\n")
    assert run(console, "submit_job here")[0]
    assert run(console, f"submit_job {tmp_path / 'here'}")[0]
    assert [c[1] for c in fake.calls] == [tmp_path / "kit" / "transfer" / "both", tmp_path / "here", tmp_path / "here"]
    ok, out = run(console, "submit_job gone")
    assert not ok
    assert out == (
        f"Error: submit_job: no job folder gone (looked for {tmp_path}/kit/transfer/gone or {tmp_path}/gone)\n"
    )
    assert "d4" in console.job_ids


def test_job_commands_say_what_they_did(console: AdminConsole, fake, tmp_path: Path):
    assert run(console, "abort_job b2") == (True, "Abort requested for job b2.\n")
    assert run(console, "clone_job a1") == (True, "Cloned job a1 as job e5.\n")
    assert run(console, "resume_job a1") == (True, "Resumed job a1 as job f6.\n")
    assert run(console, "download_job a1") == (True, f"Downloaded job a1 to {tmp_path / 'kit' / 'transfer' / 'a1'}\n")
    assert (tmp_path / "kit" / "transfer" / "a1").is_dir()
    assert run(console, "show_errors a1") == (True, "No errors in job a1.\n")
    assert run(console, "show_errors b2") == (True, "site-2:\n  ERROR boom\n  ValueError: bad shape\n")
    assert run(console, "show_stats b2") == (
        True,
        "server:\n  rounds: 3\n  status: RUNNING\n  duration_s: 65.043\n  sites: site-1, site-2\n"
        "site-1:\n  cpu_percent: 10 samples: min 0, max 9, last 9\n"
        f"  last:\n    time: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(1_700_000_000.0))}\n    rss: 512.5\n",
    )


def test_check_status_and_list_sites(console: AdminConsole, fake):
    ok, out = run(console, "check_status server")
    lines = out.splitlines()
    assert ok and lines[:3] == ["Server server (project proj): started", "Running jobs: b2", "Registered clients: 2"]
    assert re.fullmatch(r"\| site-1 \| acme \| yes +\| 0\.4 s ago +\| b2 +\|", lines[6])
    assert re.fullmatch(r"\| site-9 \| beta \| no +\| 93\.2 s ago +\| +\|", lines[7])
    ok, out = run(console, "check_status client site-9")
    assert ok and "site-9" in out and "site-1" not in out
    assert fake.calls[-1] == ("check_status", "client", ["site-9"])
    ok, out = run(console, "list_sites")
    assert ok and out.splitlines()[1].split() == "| NAME | TYPE | ORG | ONLINE | LAST SEEN | VERSION |".split()
    assert re.search(r"\| site-1 \| client \| acme \| yes +\| 0\.5 s ago \| 0\.1\.0 +\|", out)


def test_shutdown_and_restart_clients(console: AdminConsole, fake):
    assert run(console, "shutdown client site-2") == (True, "Shutdown requested for client(s) site-2.\n")
    assert run(console, "shutdown client") == (True, "Shutdown requested for client(s) site-1, site-2.\n")
    assert fake.calls[-2:] == [("shutdown", ["site-2"]), ("shutdown", None)]
    fake.online = ["site-1"]
    assert run(console, "shutdown client site-1 site-9") == (
        True,
        "Shutdown requested for client(s) site-1 (offline, not told: site-9).\n",
    )
    assert run(console, "shutdown client site-9") == (False, "Error: shutdown: none of the clients named is online\n")
    fake.online = []
    assert run(console, "shutdown client") == (False, "Error: shutdown: no client is online\n")


def test_help_lists_every_command_and_shows_one(console: AdminConsole):
    ok, out = run(console, "help")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert ok and names == [
        "submit_job",
        "list_jobs",
        "abort_job",
        "clone_job",
        "resume_job",
        "delete_job",
        "download_job",
        "show_errors",
        "show_stats",
        "check_status",
        "list_sites",
        "shutdown",
        "restart",
        "dashboard_login",
        "help",
        "bye",
        "quit",
    ]
    assert sorted(names) == sorted(n[3:] for n in console.get_names() if n.startswith("do_"))
    ok, out = run(console, "? list_jobs")
    assert ok and out.startswith("usage: list_jobs [-n NAME_PREFIX] [-d] [-u] [-r] [-m N] [JOB_ID_PREFIX]\n")
    assert re.search(r"\n  -m N +at most N jobs\n", out)


def test_bye_quit_and_end_of_input_leave(console: AdminConsole):
    assert console.onecmd("bye") and console.onecmd("quit") and console.onecmd("EOF")
    assert not console.onecmd("") and not console.onecmd("list_jobs")


def test_completion_of_commands_job_ids_sites_and_paths(console: AdminConsole, tmp_path: Path):
    assert console.completenames("list_j") == ["list_jobs"]
    assert console.completenames("show_") == ["show_errors", "show_stats"]
    assert "EOF" not in console.completenames("")
    assert console.complete_abort_job("b", "abort_job b", 10, 11) == ["b2"]
    assert console.complete_abort_job("", "abort_job b2 ", 13, 13) == []
    assert console.complete_download_job("", "download_job ", 13, 13) == ["b2", "a1", "c3"]
    assert console.complete_list_jobs("-", "list_jobs -", 10, 11) == ["-n", "-d", "-u", "-r", "-m"]
    assert console.complete_check_status("c", "check_status c", 13, 14) == ["client"]
    # sites: from the job records, then from check_status and list_sites
    assert console.complete_check_status("", "check_status client ", 20, 20) == ["site-1", "site-2"]
    assert console.complete_shutdown("site-", "shutdown client site-1 site-", 23, 28) == ["site-2"]
    assert console.complete_shutdown("", "shutdown server ", 16, 16) == []
    run(console, "list_sites")
    assert console.complete_restart("", "restart client ", 15, 15) == ["site-1", "site-2", "site-7"]
    assert console.complete_help("show") == ["show_errors", "show_stats"]
    # paths: the kit's transfer/ folder and the current one, folders with a slash
    (tmp_path / "kit" / "transfer" / "job_a").mkdir(parents=True)
    (tmp_path / "job_b" / "app").mkdir(parents=True)
    (tmp_path / "job_notes.txt").write_text("")
    (tmp_path / ".hidden_job").mkdir()
    assert console.complete_submit_job("job", "submit_job job", 11, 14) == ["job_a/", "job_b/", "job_notes.txt"]
    assert console.complete_submit_job("job_b/", "submit_job job_b/", 11, 17) == ["job_b/app/"]
    assert console.complete_submit_job(".h", "submit_job .h", 11, 13) == [".hidden_job/"]
    absolute = str(tmp_path / "job_")
    assert console.complete_submit_job(absolute, "submit_job " + absolute, 11, 11 + len(absolute)) == [
        absolute + "b/",
        absolute + "notes.txt",
    ]


def test_site_names_come_from_the_server_when_none_are_known(fake: FakeSession, tmp_path: Path):
    for record in fake.jobs:
        record["sites"] = []
    c = AdminConsole(fake, stdout=io.StringIO(), cwd=tmp_path)
    c.login()
    assert c.complete_check_status("", "check_status client ", 20, 20) == ["site-1", "site-7"]


# ---- the real console on a terminal, against a real federation ---------------------------------------------

PROMPT = "\r\n> "


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = Federation(tmp_path_factory.mktemp("admin-console"), ["site-1", "site-2", "site-3"])
    federation.start("server")
    federation.wait_log("server", r"listening on port")
    for site in ("site-1", "site-2"):
        federation.start(site)
        federation.wait_log("server", rf"client '{site}' \(org acme\) registered")
    yield federation
    federation.stop_all()


class Terminal:
    """`flruntime admin` in a pseudo-terminal; what it printed is kept for failure messages."""

    def __init__(self, kit: Path, *extra: str, cwd: Path | None = None) -> None:
        self.log = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "flruntime", "admin", "--kit", str(kit), *extra],
            cwd=str(cwd) if cwd else None,
            env={**os.environ, "TERM": "dumb"},
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(50, 250),
            timeout=60,
        )
        self.child.logfile_read = self.log

    def expect(self, pattern: str | list[Any], timeout: float = 60) -> int:
        try:
            return int(self.child.expect(pattern, timeout=timeout))
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise AssertionError(f"no {pattern!r} in the console's output:\n{self.log.getvalue()[-6000:]}") from exc

    def command(self, line: str, timeout: float = 60) -> str:
        """Type a line, wait for the next prompt, return what the command printed (no echo, lines end with \\n)."""
        self.child.sendline(line)
        self.expect(re.escape(line) + r"\r\n", timeout)
        self.expect(re.escape(PROMPT), timeout)
        return str(self.child.before).replace("\r\n", "\n") + "\n"

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def terminal(fed: Federation) -> Iterator[Terminal]:
    term = Terminal(fed.kit(ADMIN))
    term.expect(rf"Logged into server at 127.0.0.1:{fed.port + 1} as {re.escape(ADMIN)} \(project_admin\)")
    term.expect(re.escape(PROMPT))
    yield term
    term.close()


def grab(pattern: str, text: str) -> str:
    """The first group of ``pattern``, which must match all of ``text``."""
    found = re.fullmatch(pattern, text)
    assert found, f"{pattern!r} does not match {text!r}"
    return found.group(1)


def wait_status(term: Terminal, job_id: str, status: str, timeout: float = 180) -> str:
    """Run `list_jobs JOB_ID` until the job's row shows ``status``; return that output."""
    deadline = time.monotonic() + timeout
    while True:
        out = term.command(f"list_jobs {job_id}")
        if re.search(rf"\| {job_id} \| np_fedavg \| {re.escape(status)} +\|", out):
            return out
        assert "FINISHED" not in out, out
        assert time.monotonic() < deadline, f"job {job_id} is not {status} after {timeout} s:\n{out}"
        time.sleep(1)


@pytest.mark.slow
def test_login_submit_list_download_and_bye(fed: Federation, terminal: Terminal, tmp_path: Path):
    history = fed.kit(ADMIN) / HISTORY_FILE
    history.unlink(missing_ok=True)
    # tab completes a command name
    terminal.child.send("list_j\t")
    terminal.expect("list_jobs")
    terminal.child.send("\r")
    terminal.expect(r"JOB ID \| NAME|No jobs")
    terminal.expect(re.escape(PROMPT))

    job = np_job(tmp_path / "job", ["site-1", "site-2"], rounds=2)
    out = terminal.command(f"submit_job {job}")
    job_id = grab(r"Submitted job: (\S+)\n", out)
    out = terminal.command("list_jobs")
    assert re.search(rf"\| {job_id} \| np_fedavg \| (SUBMITTED|DISPATCHED|RUNNING|FINISHED:COMPLETED) +\|", out), out
    wait_status(terminal, job_id, "FINISHED:COMPLETED")

    out = terminal.command(f"download_job {job_id}")
    folder = Path(grab(rf"Downloaded job {job_id} to (.+)\n", out))
    assert folder == fed.kit(ADMIN) / "transfer" / job_id and folder.is_dir() and any(folder.iterdir())

    # a mistake: one line, and the console goes on
    assert (
        terminal.command("frobnicate now") == "Error: unknown command 'frobnicate' (type help to list the commands)\n"
    )
    assert terminal.command("abort_job no-such-job").count("\n") == 1
    out = terminal.command("? list_jobs")
    assert out.startswith("usage: list_jobs [-n NAME_PREFIX] [-d] [-u] [-r] [-m N] [JOB_ID_PREFIX]"), out
    # Ctrl-C drops the line being typed, not the console
    terminal.child.send("list_jobs half-typed")
    terminal.expect("half-typed")  # readline has the line (a busy machine may take a moment)
    terminal.child.sendintr()
    terminal.expect(re.escape("^C" + PROMPT))
    assert terminal.command("list_jobs -m 1").startswith("---")
    assert "Traceback" not in terminal.log.getvalue()

    terminal.child.sendline("bye")
    terminal.expect(pexpect.EOF)
    terminal.child.close()
    assert terminal.child.exitstatus == 0
    lines = history.read_text().splitlines()
    assert lines[-1] == "bye" and f"submit_job {job}" in lines and "frobnicate now" in lines

    # the next console recalls the history (up arrow)
    again = Terminal(fed.kit(ADMIN))
    again.expect(re.escape(PROMPT))
    again.child.send("\x1b[A")
    again.expect("bye")
    again.child.sendcontrol("u")
    again.child.sendeof()
    again.expect(pexpect.EOF)
    again.child.close()
    assert again.child.exitstatus == 0


@pytest.mark.slow
def test_submit_from_transfer_with_completion_then_abort(fed: Federation, terminal: Terminal):
    np_job(fed.kit(ADMIN) / "transfer" / "slow_job", ["site-1", "site-2"], rounds=50, sleep=0.5)
    terminal.child.send("submit_job slow_j\t")
    terminal.expect("slow_job/")
    terminal.child.send("\r")
    terminal.expect(r"Submitted job: (\S+)(?=\r\n)")
    job_id = terminal.child.match.group(1)
    terminal.expect(re.escape(PROMPT))
    wait_status(terminal, job_id, "RUNNING")
    # the job id completes from the last listing
    terminal.child.send(f"abort_job {job_id[:6]}\t")
    terminal.expect(re.escape(job_id))
    terminal.child.send("\r")
    terminal.expect(re.escape(f"Abort requested for job {job_id}."))
    terminal.expect(re.escape(PROMPT))
    out = wait_status(terminal, job_id, "FINISHED:ABORTED", timeout=60)
    assert job_id in out


@pytest.mark.slow
def test_commands_given_with_c(fed: Federation, tmp_path: Path):
    kit = str(fed.kit(ADMIN))
    base = [sys.executable, "-m", "flruntime", "admin", "--kit", kit]
    done = subprocess.run([*base, "-c", "list_jobs -m 1", "-c", "help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"Logged into server at 127.0.0.1:{fed.port + 1} as {ADMIN} (project_admin)\n"
    assert done.stdout.startswith(("---", "No jobs.")) and "Commands (help COMMAND" in done.stdout

    failed = subprocess.run([*base, "-c", "abort_job nope", "-c", "help"], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 3
    assert failed.stderr.splitlines()[1:] == [failed.stderr.splitlines()[-1]]
    assert failed.stderr.splitlines()[-1].startswith("Error: ") and "nope" in failed.stderr
    assert failed.stdout == ""  # it stopped at the first failure


@pytest.mark.slow
def test_an_unreachable_server_is_one_line_and_exit_3(tmp_path: Path):
    down = Federation(tmp_path / "down", ["site-1"])  # provisioned, never started
    kit = str(down.kit(ADMIN))
    for extra in (["-c", "list_jobs"], []):
        done = subprocess.run(
            [sys.executable, "-m", "flruntime", "admin", "--kit", kit, *extra],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=90,
        )
        assert done.returncode == 3, done
        assert done.stderr.count("\n") == 1 and done.stdout == ""
        assert done.stderr.startswith(f"flruntime: error: cannot reach the server at 127.0.0.1:{down.port + 1}")
    term = Terminal(down.kit(ADMIN))
    term.expect("flruntime: error: cannot reach the server")
    term.expect(pexpect.EOF)
    term.child.close()
    assert term.child.exitstatus == 3


@pytest.mark.slow
def test_status_sites_errors_stats_clone_delete(fed: Federation, terminal: Terminal, tmp_path: Path):
    out = terminal.command("check_status server")
    assert re.match(r"Server server \(project proj\): \S+", out), out
    assert re.search(r"\| site-1 \| acme \| yes +\|", out) and re.search(r"\| site-2 \| acme \| yes +\|", out)
    out = terminal.command("check_status client site-2")
    assert re.search(r"\| site-2 \| acme \| yes +\|", out) and "site-1" not in out, out
    out = terminal.command("list_sites")
    for site in ("site-1", "site-2", "site-3"):
        assert re.search(rf"\| {site} +\| client \| acme \|", out), out
    # site names complete (from the listings above)
    terminal.child.send("check_status client site-\t\t")
    terminal.expect("site-3")
    terminal.child.sendcontrol("u")
    terminal.child.send("\r")
    terminal.expect(re.escape(PROMPT))

    out = terminal.command(f"submit_job {np_job(tmp_path / 'job', ['site-1', 'site-2'], rounds=1)}")
    job_id = out.split()[-1]
    wait_status(terminal, job_id, "FINISHED:COMPLETED")
    assert terminal.command(f"show_errors {job_id}") == f"No errors in job {job_id}.\n"
    out = terminal.command(f"show_stats {job_id}")
    assert "server:" in out and "site-1:" in out and "Error" not in out, out

    out = terminal.command(f"clone_job {job_id}")
    clone = grab(rf"Cloned job {job_id} as job (\S+)\.\n", out)
    wait_status(terminal, clone, "FINISHED:COMPLETED")
    assert terminal.command(f"delete_job {clone}") == f"Deleted job {clone}.\n"
    assert clone not in terminal.command("list_jobs")
    assert terminal.command(f"delete_job {clone}").startswith("Error: ")


@pytest.mark.slow
def test_restart_and_shutdown_a_client(fed: Federation, terminal: Terminal):
    fed.start("site-3")
    fed.wait_log("server", r"client 'site-3' \(org acme\) registered")
    marker = fed.kit("site-3") / "restart.fl"
    marker.unlink(missing_ok=True)
    assert terminal.command("restart client site-3") == "Restart requested for client(s) site-3.\n"
    fed.wait_log("site-3", r"the server asked this client to restart")
    fed.procs["site-3"].wait(timeout=60)
    assert marker.exists()

    fed.start("site-3")
    fed.wait_log("server", r"client 'site-3' \(org acme\) registered", count=2)
    assert terminal.command("shutdown client site-3") == "Shutdown requested for client(s) site-3.\n"
    fed.wait_log("site-3", r"the server asked this client to shutdown")
    fed.procs["site-3"].wait(timeout=60)
    assert (fed.kit("site-3") / "shutdown.fl").exists()
    out = terminal.command("check_status client site-1")
    assert re.search(r"\| site-1 \| acme \| yes +\|", out)
