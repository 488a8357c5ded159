"""The admin console's text: each command's argument parser (its usage is the help text), tables and records."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, NoReturn

from flruntime.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """A command's argument parser: a mistake raises :class:`UsageError` (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (usage: {self.format_usage().strip().removeprefix('usage: ')})")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError((message or f"{self.prog}: bad arguments").strip())


def _parser(name: str, summary: str, details: str = "") -> _Parser:
    return _Parser(
        prog=name,
        description=summary + (f"\n\n{details}" if details else ""),
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _job_id(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("job_id", metavar="JOB_ID")
    return p


def _build_parsers() -> dict[str, _Parser]:
    """One parser per command: its arguments and the text ``help COMMAND`` prints."""
    ps: dict[str, _Parser] = {}

    p = ps["submit_job"] = _parser(
        "submit_job",
        "check a job folder here, upload it to the server and print its job id",
        "A relative JOB_DIR is looked up in the kit's transfer/ folder first, then in the current folder.",
    )
    p.add_argument("job_dir", metavar="JOB_DIR")

    p = ps["list_jobs"] = _parser(
        "list_jobs",
        "list the server's jobs: JOB ID, NAME, STATUS, SUBMIT TIME, RUN DURATION (oldest first)",
    )
    p.add_argument("-n", dest="name_prefix", metavar="NAME_PREFIX", help="only jobs whose name starts with this")
    p.add_argument("-d", dest="details", action="store_true", help="print each job's record in full")
    p.add_argument("-u", dest="mine", action="store_true", help="only the jobs this admin submitted")
    p.add_argument("-r", dest="reverse", action="store_true", help="newest first")
    p.add_argument("-m", dest="max", type=int, metavar="N", help="at most N jobs")
    p.add_argument("id_prefix", nargs="?", metavar="JOB_ID_PREFIX", help="only jobs whose id starts with this")

    _job_id(_parser_into(ps, "abort_job", "abort a submitted or running job"))
    _job_id(_parser_into(ps, "clone_job", "submit a copy of a job (its job folder) as a new job; prints the new id"))
    _job_id(
        _parser_into(ps, "resume_job", "submit a job again, starting from its last global model; prints the new id")
    )
    _job_id(_parser_into(ps, "delete_job", "delete a finished job: its record, job folder and workspace"))
    _job_id(
        _parser_into(
            ps,
            "download_job",
            "download a job's server workspace (models, results, logs) into the kit's transfer/ folder",
        )
    )
    _job_id(_parser_into(ps, "show_errors", "show the errors each site logged while running a job"))
    _job_id(_parser_into(ps, "show_stats", "show a job's statistics per site (rounds, CPU, memory)"))

    p = ps["check_status"] = _parser("check_status", "show the server's status and its clients, or some clients'")
    p.add_argument("target", choices=("server", "client"), metavar="server|client")
    p.add_argument("sites", nargs="*", metavar="SITE", help="with client: only these clients")

    _parser_into(ps, "list_sites", "list the server and the clients the project has, online or not")

    for verb in ("shutdown", "restart"):
        p = ps[verb] = _parser(
            verb,
            f"{verb} client processes (all clients, or the SITEs named)",
            f"Only clients: `{verb} client [SITE ...]`; the server is managed where it runs.",
        )
        p.add_argument("target", choices=("client",), metavar="client")
        p.add_argument("sites", nargs="*", metavar="SITE")

    _parser_into(
        ps,
        "dashboard_login",
        "print a one-time link that logs you into the server's web dashboard",
        "The server must run the dashboard (FLRUNTIME_DASHBOARD_PORT); the link is valid for a few minutes.",
    )

    p = ps["help"] = _parser("help", "list the commands, or show how to use one (also: ? COMMAND)")
    p.add_argument("command", nargs="?", metavar="COMMAND")
    _parser_into(ps, "bye", "leave the console (also: quit, Ctrl-D)")
    _parser_into(ps, "quit", "leave the console (also: bye, Ctrl-D)")
    return ps


def _parser_into(ps: dict[str, _Parser], name: str, summary: str, details: str = "") -> _Parser:
    ps[name] = _parser(name, summary, details)
    return ps[name]


PARSERS = _build_parsers()


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An NVFlare-style table: cells between ``|``, lines of dashes above, below and under the header."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "-" * (sum(widths) + 3 * len(widths) + 1)
    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def when(epoch: float | None) -> str:
    """A local time (``2024-05-01 13:45:07``), or empty."""
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def took(seconds: float | None) -> str:
    """A duration as ``H:MM:SS`` (NVFlare prints a timedelta), or empty."""
    if seconds is None:
        return ""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def ago(seconds: float | None) -> str:
    """How long ago something was seen, or empty."""
    return "" if seconds is None else f"{seconds:.1f} s ago"


def jobs_table(records: list[dict[str, Any]]) -> str:
    """The ``list_jobs`` table of job records."""
    rows = [
        [
            str(r["job_id"]),
            str(r.get("name", "")),
            str(r.get("status", "")),
            when(r.get("submit_time")),
            took(r.get("duration")),
        ]
        for r in records
    ]
    return table(["JOB ID", "NAME", "STATUS", "SUBMIT TIME", "RUN DURATION"], rows)


def one_line(text: str) -> str:
    """``text`` as one line (an error's lines joined)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip()) or "failed"


def yes_no(flag: Any) -> str:
    """``yes`` or ``no``."""
    return "yes" if flag else "no"


def names_text(items: Any) -> str:
    """Job ids or names from a list of strings or records."""
    out = []
    for item in items or []:
        out.append(str(item.get("job_id") or item.get("name") or item) if isinstance(item, dict) else str(item))
    return ", ".join(out)


def clients_table(clients: list[dict[str, Any]]) -> str:
    """The clients of ``check_status``: CLIENT, ORG, ONLINE, LAST SEEN, JOBS."""
    rows = [
        [
            str(c.get("name", "")),
            str(c.get("org", "")),
            yes_no(c.get("online")),
            ago(c.get("last_seen_s")),
            names_text(c.get("jobs")),
        ]
        for c in clients
    ]
    return table(["CLIENT", "ORG", "ONLINE", "LAST SEEN", "JOBS"], rows)


def render(value: Any, indent: int = 2) -> list[str]:
    """Nested statistics as indented ``key: value`` lines; long series of numbers are summarised."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines += [f"{pad}{key}:", *render(item, indent + 2)]
            elif (key == "time" or str(key).endswith("_time")) and isinstance(item, int | float) and item > 1e8:
                lines.append(f"{pad}{key}: {when(item)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    return [f"{pad}{_scalar(value)}"]


def _scalar(value: Any) -> str:
    numbers = isinstance(value, list) and value and all(isinstance(v, int | float) for v in value)
    if numbers and len(value) > 6:
        return f"{len(value)} samples: min {min(value):g}, max {max(value):g}, last {value[-1]:g}"
    if isinstance(value, float):
        return str(round(value, 3))
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, default=str)
