"""The admin console: NVFlare's admin commands over an admin's session, on :class:`cmd.Cmd`.

:class:`AdminConsole` turns one command line (``list_jobs -m 3``, ``download_job ID``, ...) into calls of an
:class:`~flruntime.federation.admin.AdminSession` and prints the answer; every failure is one line and the
console goes on. It completes command names, job ids (from the last listing), site names and, for
``submit_job``, file paths; :func:`load_history` / :func:`save_history` keep readline's history in the kit
folder. ``flruntime admin`` (:mod:`flruntime.cli.admin`) opens it on a terminal or runs ``-c`` commands.
"""

from __future__ import annotations

import argparse
import cmd
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from flruntime.errors import FLRuntimeError, UsageError
from flruntime.federation.console_text import (
    PARSERS,
    ago,
    clients_table,
    jobs_table,
    names_text,
    one_line,
    render,
    table,
    yes_no,
)
from flruntime.federation.kit import Kit

#: The history file, in the admin's kit folder.
HISTORY_FILE = ".admin_history"
#: Lines of history kept.
HISTORY_LENGTH = 1000
#: The folder of the kit that ``download_job`` writes to and ``submit_job`` looks in first (as NVFlare's).
TRANSFER = "transfer"


class ConsoleSession(Protocol):
    """What the console needs of a session (:class:`~flruntime.federation.admin.AdminSession` has it)."""

    kit: Kit

    def submit(self, job_dir: str | Path) -> str: ...  # noqa: D102

    def list_jobs(self, job_id: str | None = None) -> list[dict[str, Any]]: ...  # noqa: D102

    def abort(self, job_id: str) -> None: ...  # noqa: D102

    def download(self, job_id: str, dest: str | Path) -> Path: ...  # noqa: D102

    def clone(self, job_id: str) -> str: ...  # noqa: D102

    def resume(self, job_id: str) -> str: ...  # noqa: D102

    def delete(self, job_id: str) -> None: ...  # noqa: D102

    def check_status(self, target: str = "server", sites: list[str] | None = None) -> dict[str, Any]: ...  # noqa: D102

    def list_sites(self) -> list[dict[str, Any]]: ...  # noqa: D102

    def show_errors(self, job_id: str) -> dict[str, list[str]]: ...  # noqa: D102

    def show_stats(self, job_id: str) -> dict[str, Any]: ...  # noqa: D102

    def shutdown_clients(self, sites: list[str] | None = None) -> object: ...  # noqa: D102

    def restart_clients(self, sites: list[str] | None = None) -> object: ...  # noqa: D102

    def dashboard_url(self) -> str: ...  # noqa: D102


class AdminConsole(cmd.Cmd):
    """NVFlare's admin commands over a session.

    Args:
        session: a logged-in admin session.
        stdout: where answers go (default: standard output).
        errors: where the one-line errors go (default: ``stdout``).
        cwd: the folder relative job folders are looked up in after the kit's ``transfer/`` (default: the
            current folder when a command runs).

    Attributes:
        ok: False after a command that failed (reset by :meth:`run_command`).
    """

    prompt = "> "
    intro = "Type help or ? to list the commands, bye to leave."

    def __init__(
        self,
        session: ConsoleSession,
        stdout: IO[str] | None = None,
        errors: IO[str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        super().__init__(stdout=stdout or sys.stdout)
        self.session = session
        self.errors = errors or self.stdout
        self.cwd = Path(cwd) if cwd is not None else None
        self.ok = True
        self.job_ids: list[str] = []
        self.sites: list[str] = []
        self._sites_asked = False

    # ---- the session's kit ------------------------------------------------------------------------------

    @property
    def kit(self) -> Kit:
        """The admin's kit."""
        return self.session.kit

    @property
    def transfer(self) -> Path:
        """The kit's ``transfer/`` folder."""
        return Path(self.kit.root) / TRANSFER

    @property
    def history_file(self) -> Path:
        """The readline history file in the kit folder."""
        return Path(self.kit.root) / HISTORY_FILE

    def login(self) -> str:
        """Check that the server answers this admin; return the ``Logged into ...`` line.

        Raises:
            FLRuntimeError: the server refused or could not be reached.
        """
        self._remember_jobs(self.session.list_jobs())
        kit = self.kit
        return f"Logged into server at {kit.target} as {kit.name} ({kit.role or 'no role'})"

    # ---- running commands -------------------------------------------------------------------------------

    def run_command(self, line: str) -> bool:
        """Run one command line; return True when it succeeded."""
        self.ok = True
        self.onecmd(line)
        return self.ok

    def onecmd(self, line: str) -> bool:
        """Run one command line; an interrupt ends the command, not the console."""
        try:
            return bool(super().onecmd(line))
        except KeyboardInterrupt:
            self._error("interrupted")
            return False

    def emptyline(self) -> bool:
        """An empty line does nothing (``cmd`` would repeat the last command)."""
        return False

    def default(self, line: str) -> None:
        """An unknown command: one line."""
        name = line.split()[0] if line.split() else line
        self._error(f"unknown command '{name}' (type help to list the commands)")

    def _error(self, message: str) -> None:
        self.ok = False
        self.stdout.flush()
        print(f"Error: {one_line(message)}", file=self.errors, flush=True)

    def _out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def _call(self, name: str, line: str, run: Callable[[argparse.Namespace], None]) -> bool:
        try:
            try:
                words = shlex.split(line)
            except ValueError as exc:
                raise UsageError(f"{name}: {exc}") from exc
            run(PARSERS[name].parse_args(words))
        except FLRuntimeError as exc:
            self._error(str(exc))
        except OSError as exc:
            self._error(f"{name}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a bug: still one line, and the console goes on
            self._error(f"{name}: internal error: {type(exc).__name__}: {exc}")
        self.stdout.flush()
        return False

    # ---- job commands -----------------------------------------------------------------------------------

    def job_folder(self, job_dir: str) -> Path:
        """Where ``submit_job JOB_DIR`` finds the folder: absolute as given, else in ``transfer/``, else here.

        Raises:
            UsageError: no such folder.
        """
        path = Path(job_dir).expanduser()
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [self.transfer / path, (self.cwd or Path.cwd()) / path]
        for candidate in candidates:
            if candidate.is_dir():
                return candidate
        where = " or ".join(str(c) for c in candidates)
        raise UsageError(f"submit_job: no job folder {job_dir} (looked for {where})")

    def do_submit_job(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            job_id = self.session.submit(self.job_folder(args.job_dir))
            self._remember_ids([job_id])
            self._out(f"Submitted job: {job_id}")

        return self._call("submit_job", line, run)

    def do_list_jobs(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            if args.max is not None and args.max < 1:
                raise UsageError("list_jobs: -m N needs N of at least 1")
            records = self.session.list_jobs()
            self._remember_jobs(records)
            picked = [
                r
                for r in records
                if str(r.get("name", "")).startswith(args.name_prefix or "")
                and str(r["job_id"]).startswith(args.id_prefix or "")
                and (not args.mine or r.get("submitter") == self.kit.name)
            ]
            picked.sort(key=lambda r: float(r.get("submit_time") or 0.0), reverse=args.reverse)
            if args.max is not None:
                picked = picked[: args.max]
            if not picked:
                self._out("No jobs." if not records else "No jobs match.")
            elif args.details:
                for record in picked:
                    self._out(json.dumps(record, indent=2, default=str))
            else:
                self._out(jobs_table(picked))

        return self._call("list_jobs", line, run)

    def do_abort_job(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            self.session.abort(args.job_id)
            self._out(f"Abort requested for job {args.job_id}.")

        return self._call("abort_job", line, run)

    def do_clone_job(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            new_id = self.session.clone(args.job_id)
            self._remember_ids([new_id])
            self._out(f"Cloned job {args.job_id} as job {new_id}.")

        return self._call("clone_job", line, run)

    def do_resume_job(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            new_id = self.session.resume(args.job_id)
            self._remember_ids([new_id])
            self._out(f"Resumed job {args.job_id} as job {new_id}.")

        return self._call("resume_job", line, run)

    def do_delete_job(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            self.session.delete(args.job_id)
            if args.job_id in self.job_ids:
                self.job_ids.remove(args.job_id)
            self._out(f"Deleted job {args.job_id}.")

        return self._call("delete_job", line, run)

    def do_download_job(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            folder = self.session.download(args.job_id, self.transfer)
            self._out(f"Downloaded job {args.job_id} to {folder}")

        return self._call("download_job", line, run)

    def do_show_errors(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            found = {site: lines for site, lines in self.session.show_errors(args.job_id).items() if lines}
            if not found:
                self._out(f"No errors in job {args.job_id}.")
            for site, lines in found.items():
                self._out(f"{site}:")
                for text in lines:
                    self._out(f"  {text}")

        return self._call("show_errors", line, run)

    def do_show_stats(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            stats = self.session.show_stats(args.job_id)
            if not stats:
                self._out(f"No statistics for job {args.job_id}.")
            for site, value in stats.items():
                self._out(f"{site}:")
                for text in render(value):
                    self._out(text)

        return self._call("show_stats", line, run)

    # ---- sites ------------------------------------------------------------------------------------------

    def do_check_status(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            if args.target == "server":
                if args.sites:
                    raise UsageError("check_status: server takes no site names (check_status client SITE ...)")
                status = self.session.check_status("server")
                clients = list(status.get("clients") or [])
                self._remember_sites(c.get("name") for c in clients)
                self._out(
                    f"Server {status.get('server', '')} (project {status.get('project', '')}): "
                    f"{status.get('status', '')}"
                )
                running = status.get("running_jobs") or []
                self._out(f"Running jobs: {names_text(running) or 'none'}")
                self._out(f"Registered clients: {len(clients)}")
                if clients:
                    self._out(clients_table(clients))
                return
            status = self.session.check_status("client", list(args.sites) or None)
            clients = list(status.get("clients") or [])
            self._remember_sites(c.get("name") for c in clients)
            self._out(clients_table(clients) if clients else "No clients.")

        return self._call("check_status", line, run)

    def do_list_sites(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            sites = self.session.list_sites()
            self._remember_sites(s.get("name") for s in sites if s.get("type", "client") == "client")
            rows = [
                [
                    str(s.get("name", "")),
                    str(s.get("type", "")),
                    str(s.get("org", "")),
                    yes_no(s.get("online")),
                    ago(s.get("last_seen_s")),
                    str(s.get("version") or ""),
                ]
                for s in sites
            ]
            self._out(table(["NAME", "TYPE", "ORG", "ONLINE", "LAST SEEN", "VERSION"], rows))

        return self._call("list_sites", line, run)

    def _clients(self, verb: str, line: str, act: Callable[[list[str] | None], object]) -> bool:
        def run(args: argparse.Namespace) -> None:
            answer = act(list(args.sites) or None)
            told = [str(s) for s in answer] if isinstance(answer, list) else list(args.sites)
            if not told and isinstance(answer, list):
                raise UsageError(f"{verb}: {'none of the clients named' if args.sites else 'no client'} is online")
            missed = [s for s in args.sites if s not in told]
            self._out(
                f"{verb.capitalize()} requested for "
                + (f"client(s) {', '.join(told)}" if told else "all clients")
                + (f" (offline, not told: {', '.join(missed)})." if missed else ".")
            )

        return self._call(verb, line, run)

    def do_shutdown(self, line: str) -> bool:  # noqa: D102
        return self._clients("shutdown", line, self.session.shutdown_clients)

    def do_restart(self, line: str) -> bool:  # noqa: D102
        return self._clients("restart", line, self.session.restart_clients)

    def do_dashboard_login(self, line: str) -> bool:  # noqa: D102
        def run(args: argparse.Namespace) -> None:
            self._out(self.session.dashboard_url())

        return self._call("dashboard_login", line, run)

    # ---- help and leaving -------------------------------------------------------------------------------

    def do_help(self, arg: str) -> bool:
        """List the commands, or show how to use one."""

        def run(args: argparse.Namespace) -> None:
            if args.command:
                name = args.command
                if name not in PARSERS:
                    raise UsageError(f"help: no command '{name}' (type help to list the commands)")
                self._out(PARSERS[name].format_help().rstrip())
                return
            width = max(len(n) for n in PARSERS)
            self._out("Commands (help COMMAND or ? COMMAND for one):")
            for name, parser in PARSERS.items():
                summary = (parser.description or "").split("\n")[0]
                self._out(f"  {name.ljust(width)}  {summary}")

        return self._call("help", arg, run)

    def do_bye(self, line: str) -> bool:  # noqa: D102
        return True

    def do_quit(self, line: str) -> bool:  # noqa: D102
        return True

    def do_EOF(self, line: str) -> bool:  # noqa: D102
        self._out()
        return True

    def get_names(self) -> list[str]:
        """The command names (``EOF`` is no command to complete or list)."""
        return [n for n in super().get_names() if n != "do_EOF"]

    # ---- completion ---------------------------------------------------------------------------------------

    def _remember_jobs(self, records: list[dict[str, Any]]) -> None:
        self.job_ids = [str(r["job_id"]) for r in records]
        for record in records:
            self._remember_sites(record.get("sites") or [])

    def _remember_ids(self, ids: list[str]) -> None:
        self.job_ids += [i for i in ids if i not in self.job_ids]

    def _remember_sites(self, names: Any) -> None:
        for name in names:
            if name and str(name) not in self.sites and str(name) != "server":
                self.sites.append(str(name))

    def _known_sites(self) -> list[str]:
        if not self.sites and not self._sites_asked:  # ask the server once; completion must never fail
            self._sites_asked = True
            try:
                self._remember_sites(s.get("name") for s in self.session.list_sites() if s.get("type") != "server")
            except Exception:
                pass
        return self.sites

    @staticmethod
    def _word(line: str, begidx: int) -> int:
        """Which argument the cursor is in (0: the first after the command)."""
        return len(line[:begidx].split()) - 1

    def _complete_job_id(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        if self._word(line, begidx) != 0:
            return []
        return [j for j in self.job_ids if j.startswith(text)]

    complete_abort_job = _complete_job_id
    complete_clone_job = _complete_job_id
    complete_resume_job = _complete_job_id
    complete_delete_job = _complete_job_id
    complete_download_job = _complete_job_id
    complete_show_errors = _complete_job_id
    complete_show_stats = _complete_job_id

    def complete_list_jobs(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:  # noqa: D102
        if text.startswith("-"):
            return [o for o in ("-n", "-d", "-u", "-r", "-m") if o.startswith(text)]
        return [j for j in self.job_ids if j.startswith(text)]

    def _complete_target(self, targets: tuple[str, ...], text: str, line: str, begidx: int) -> list[str]:
        word = self._word(line, begidx)
        if word == 0:
            return [t for t in targets if t.startswith(text)]
        if line.split()[1] != "client":
            return []
        taken = set(line[:begidx].split()[2:])
        return [s for s in self._known_sites() if s.startswith(text) and s not in taken]

    def complete_check_status(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:  # noqa: D102
        return self._complete_target(("server", "client"), text, line, begidx)

    def complete_shutdown(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:  # noqa: D102
        return self._complete_target(("client",), text, line, begidx)

    complete_restart = complete_shutdown

    def complete_help(self, *args: Any) -> list[str]:
        """Complete a command name."""
        return [n for n in PARSERS if n.startswith(args[0])]

    def complete_submit_job(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """Complete a path: in the kit's ``transfer/`` and the current folder (folders end with ``/``)."""
        if self._word(line, begidx) != 0:
            return []
        expanded = os.path.expanduser(text) if text.startswith("~") and "/" in text else text
        head, tail = os.path.split(expanded)
        prefix = text[: len(text) - len(tail)]
        if os.path.isabs(expanded):
            folders = [Path(head or "/")]
        else:
            folders = [base / head for base in (self.transfer, self.cwd or Path.cwd())]
        found: set[str] = set()
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(tail) and (tail.startswith(".") or not entry.name.startswith(".")):
                    found.add(prefix + entry.name + ("/" if entry.is_dir() else ""))
        return sorted(found)


def load_history(path: Path) -> bool:
    """Turn on readline for the console and read its history file; return False without readline."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: the console works without editing
        return False
    readline.set_history_length(HISTORY_LENGTH)
    readline.set_completer_delims(" \t\n")  # paths and job ids complete as whole words
    if "libedit" in (readline.__doc__ or ""):  # macOS's Python: cmd binds GNU readline's syntax only
        readline.parse_and_bind("bind ^I rl_complete")
    if path.is_file():
        try:
            readline.read_history_file(str(path))
        except OSError:
            pass
    return True


def save_history(path: Path) -> str | None:
    """Write readline's history to ``path``; return why it could not, or None."""
    try:
        import readline
    except ImportError:
        return None
    try:
        readline.write_history_file(str(path))
    except OSError as exc:
        return f"cannot write the history file {path}: {exc.strerror or exc}"
    return None


__all__ = ["HISTORY_FILE", "AdminConsole", "ConsoleSession", "jobs_table", "load_history", "save_history", "table"]
