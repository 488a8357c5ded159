"""Checking a job folder without running its code in the caller's process.

:func:`check_job` validates a job folder as :func:`flruntime.validate_job` does. A job without code of its own
(no module under an app's ``custom/`` folder) is validated in the caller's process: library code is trusted and
that path stays fast. A job with ``custom/`` code is validated in a short-lived child
(``python -m flruntime.jobproc.check``): its own process group, no pickle (it writes its problems as JSON), a
timeout (:data:`ENV_TIMEOUT`) and an address-space limit (:data:`ENV_MEMORY`). Before the child imports a
module of ``custom/`` it writes the file's name to a marker file, so whatever the module does at import, exit,
crash, hang or allocate, ends as one problem line naming it::

    app/config/config_fed_server.json:7: $.workflows[0].path: custom/fedavg_net.py: importing it exited the
    process with code 3 (move that code under if __name__ == '__main__')

The long-lived server checks every submitted job this way, and so do ``flruntime validate`` and the simulator's
preflight; exit codes stay 0, 1 and 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from flruntime.config.job import JobFolder, discover, path_too_long
from flruntime.config.source import Source, load_file
from flruntime.errors import UsageError
from flruntime.graph.locate import DEFAULT_ALLOWED_PREFIXES, ImportPolicy
from flruntime.problems import JsonPath, Problem, Severity, errors_in
from flruntime.validation import VALIDATE_JOB_ID, validate_job

#: Seconds a job check may take (default :data:`DEFAULT_TIMEOUT`).
ENV_TIMEOUT = "FLRUNTIME_CHECK_TIMEOUT"
#: MiB of address space a job check may use (default :data:`DEFAULT_MEMORY_LIMIT`; 0: no limit).
ENV_MEMORY = "FLRUNTIME_CHECK_MEMORY_MB"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_LIMIT = 2 * 2**30
#: How much of the child's output (stdout and stderr) is kept for the problem line of a check that died.
OUTPUT_TAIL = 8192
EXIT_HINT = "move that code under if __name__ == '__main__'"


@dataclass
class CheckResult:
    """What checking a job folder found, and the job's facts a server needs to queue it.

    Attributes:
        name: the job's name (meta ``name``, else the folder's name).
        problems: every problem, errors and warnings, in order.
        deploy_map: app → site names, as the meta file says.
        client_sites: client sites named in the deploy map, in order (``@ALL`` names none).
        meta: the meta document (empty when missing or not an object).
        meta_file: the meta file, as problems name it.
        isolated: True when the check ran in a child process (the job has ``custom/`` code).
    """

    name: str
    problems: list[Problem] = field(default_factory=list)
    deploy_map: dict[str, list[str]] = field(default_factory=dict)
    client_sites: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    meta_file: str = "meta.json"
    isolated: bool = False

    @property
    def error_problems(self) -> list[Problem]:
        """The problems of severity error."""
        return errors_in(self.problems)

    @property
    def errors(self) -> list[str]:
        """The errors, one line each."""
        return [p.format() for p in self.error_problems]

    @property
    def warnings(self) -> list[str]:
        """The warnings, one line each."""
        return [p.format() for p in self.problems if p.severity is Severity.WARNING]

    @property
    def valid(self) -> bool:
        """True when no problem is an error."""
        return not self.error_problems


def _facts(job: JobFolder, problems: list[Problem], isolated: bool) -> CheckResult:
    return CheckResult(
        job.name,
        problems,
        {k: list(v) for k, v in job.deploy_map.items()},
        job.client_sites(),
        dict(job.meta_data),
        job.meta.display if job.meta is not None else "meta.json",
        isolated,
    )


def has_custom_code(job: JobFolder) -> bool:
    """True when an app of ``job`` has an importable module (source, bytecode or extension) under ``custom/``."""
    suffixes = tuple(importlib.machinery.all_suffixes())
    for app in job.apps.values():
        if app.custom_dir is None:
            continue
        try:
            if any(p.name.endswith(suffixes) for p in app.custom_dir.rglob("*")):
                return True
        except OSError:  # unreadable or too deep to walk: check it in a child to be safe
            return True
    return False


def _settings(timeout: float | None, memory_limit: int | None) -> tuple[float, int | None]:
    if timeout is None:
        raw = os.environ.get(ENV_TIMEOUT, "").strip()
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise UsageError(f"{ENV_TIMEOUT} must be a number of seconds above 0, got '{raw}'")
    if memory_limit is None:
        raw = os.environ.get(ENV_MEMORY, "").strip()
        if not raw:
            memory_limit = DEFAULT_MEMORY_LIMIT
        elif raw.isdigit():
            memory_limit = int(raw) * 2**20
        else:
            raise UsageError(f"{ENV_MEMORY} must be a whole number of MiB (0: no limit), got '{raw}'")
    return timeout, memory_limit or None


def check_job(
    folder: str | Path,
    *,
    job_id: str | None = None,
    site: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    allow: Sequence[str] = (),
    timeout: float | None = None,
    memory_limit: int | None = None,
) -> CheckResult:
    """Validate a job folder; a job with ``custom/`` code is validated in a short-lived child process.

    Args:
        folder: the job folder.
        job_id: the value of ``{JOB_ID}`` (default ``validate_job``).
        site: check only the app this site runs.
        overrides: ``-o key=value`` variable overrides (JSON values).
        allow: class path prefixes allowed besides flruntime's allowlist (``--allow``).
        timeout: seconds the child may run (None: :data:`ENV_TIMEOUT`, else 60); then its group is killed.
        memory_limit: bytes of address space the child may use (None: :data:`ENV_MEMORY` MiB, else 2 GiB;
            0: no limit).

    Returns:
        Every problem, and the job's facts (name, deploy map, client sites, meta).

    Raises:
        UsageError: the folder is missing or its path too long, an unknown site or override, a bad setting.
        RuntimeError: the check itself failed (a bug in flruntime).
    """
    root = Path(folder)
    too_long = path_too_long(root)
    if too_long is not None:
        raise UsageError(f"job folder {too_long}")
    if not root.is_dir():
        raise UsageError(f"job folder '{root}' does not exist" if not root.exists() else f"'{root}' is not a folder")
    overrides = dict(overrides or {})
    extra = tuple(allow)
    job, _ = discover(root)
    if not has_custom_code(job):
        policy = ImportPolicy(DEFAULT_ALLOWED_PREFIXES, None, extra)
        report = validate_job(root, site=site, overrides=overrides, policy=policy, job_id=job_id or VALIDATE_JOB_ID)
        return _facts(report.job, report.problems, isolated=False)
    seconds, limit = _settings(timeout, memory_limit)
    # the child imports from the caller's sys.path (e.g. a folder a test or an embedding program added)
    paths = [os.path.abspath(p) for p in sys.path if isinstance(p, str)]
    try:
        request = json.dumps({"overrides": overrides, "allow": list(extra), "sys_path": paths})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the overrides cannot be passed to the job check: {exc}") from exc
    work = Path(tempfile.mkdtemp(prefix="flruntime-check-"))
    try:
        (work / "request.json").write_text(request, encoding="utf-8")
        argv = [
            sys.executable,
            "-m",
            "flruntime.jobproc.check",
            str(root.resolve()),
            f"--result={work / 'result.json'}",
            f"--imports={work / 'imports.txt'}",
            f"--request={work / 'request.json'}",
            f"--job-id={job_id or VALIDATE_JOB_ID}",
            f"--memory-limit={limit or 0}",
            *([f"--site={site}"] if site is not None else []),
        ]
        run = _run_child(argv, work, seconds)
        return _facts(job, _child_problems(job, work, run, seconds, limit), isolated=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the parent's side ------------------------------------------------------------------------------------------


@dataclass
class _Run:
    returncode: int
    timed_out: bool
    output: str


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # glibc gives each thread that allocates its own arena of 64 MiB of address space (up to 8 per core): under
    # RLIMIT_AS a few threads (torch, OpenMP, grpc) would exhaust the limit without using the memory. Two arenas
    # keep the limit about memory actually used.
    env["MALLOC_ARENA_MAX"] = "2"
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the flruntime package
    installed = {os.path.realpath(p) for p in (*site.getsitepackages(), sysconfig.get_paths()["purelib"])}
    if os.path.realpath(root) not in installed:  # a checkout used without installing: make it importable there too
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exited(pid: int) -> bool:
    """True when ``pid`` has ended; it stays a zombie (its pid and group are not reused until it is reaped)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    return info is not None


def _run_child(argv: list[str], cwd: Path, timeout: float) -> _Run:
    """Run the check child in its own process group; kill the whole group when it ends or runs out of time."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,  # not the caller's folder: its modules must not shadow anything in the child
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail = bytearray()

    def read(stream: Any = proc.stdout) -> None:  # keep only the end: a module may print without end
        for chunk in iter(lambda: stream.read1(65536), b""):
            tail.extend(chunk)
            del tail[:-OUTPUT_TAIL]

    reader = threading.Thread(target=read, name="job-check-output", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        if hasattr(os, "waitid"):
            pause = 0.001
            while not _exited(proc.pid):
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
                pause = min(pause * 2, 0.05)
        else:  # pragma: no cover - platforms without waitid reap first, then kill what is left of the group
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        _kill_group(proc.pid)  # on a timeout, and whatever the job's code started and left behind
        proc.wait()
        reader.join(5)
        proc.stdout.close()
    return _Run(proc.returncode, timed_out, tail.decode("utf-8", errors="replace"))


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _problem_of(data: dict[str, Any]) -> Problem:
    return Problem(
        str(data["file"]),
        tuple(data["path"]),
        str(data["message"]),
        str(data.get("hint", "")),
        int(data.get("line", 0)),
        int(data.get("column", 0)),
        str(data.get("code", "invalid")),
        Severity(data.get("severity", "error")),
    )


def _open_imports(path: Path) -> list[str]:
    """The custom module files the child had begun and not finished importing, outermost first."""
    stack: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return stack
    for line in lines:
        mark, _, name = line.partition(" ")
        try:
            file = json.loads(name)
        except ValueError:
            continue
        if mark == "+":
            stack.append(str(file))
        elif mark == "-" and str(file) in stack:
            del stack[len(stack) - 1 - stack[::-1].index(str(file)) :]
    return stack


def _what_happened(run: _Run, timeout: float, limit: int | None) -> tuple[str, str]:
    """The end of the child as ``(what, hint)``: ``exited the process with code 3``, ``was killed by signal ...``."""
    if run.timed_out:
        return (
            f"did not finish within {timeout:g} s",
            f"do slow work when the job runs, not at import, or raise {ENV_TIMEOUT}",
        )
    if run.returncode >= 0:
        return f"exited the process with code {run.returncode}", EXIT_HINT
    number = -run.returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    hint = ""
    if number == signal.SIGKILL and limit:
        hint = f"it may have used more than the {limit // 2**20} MiB a job check may use ({ENV_MEMORY})"
    return f"was killed by signal {number} ({name})", hint


def _app_of(job: JobFolder, file: str) -> tuple[str, Path] | None:
    """The app whose ``custom/`` folder holds ``file``, and the file relative to that app's folder."""
    full = Path(os.path.abspath(file))
    for name, app in job.apps.items():
        if app.custom_dir is not None and full.is_relative_to(os.path.abspath(app.custom_dir)):
            return name, full.relative_to(os.path.abspath(app.root))
    return None


def _uses(node: Any, module: str, at: JsonPath = ()) -> JsonPath | None:
    """The JSON path of the first ``path`` / ``class_path`` in ``node`` that names a class of ``module``."""
    if isinstance(node, dict):
        for key in ("path", "class_path"):
            value = node.get(key)
            if isinstance(value, str) and value.split(".")[0] == module:
                return (*at, key)
        children: Iterator[tuple[str | int, Any]] = iter(node.items())
    elif isinstance(node, list):
        children = iter(enumerate(node))
    else:
        return None
    for part, child in children:
        found = _uses(child, module, (*at, part))
        if found is not None:
            return found
    return None


def _first_use(job: JobFolder, app_name: str, module: str) -> tuple[Source, JsonPath] | None:
    """Where a config of ``app_name`` first names a class of the custom ``module`` (read only, nothing imported)."""
    app = job.apps[app_name]
    for side in job.sides_of(app_name) or ["server", "client"]:
        path = app.config_file(side)
        if path is None:
            continue
        source, _ = load_file(path, job.display(path))
        found = _uses(source.data, module) if source is not None else None
        if source is not None and found is not None:
            return source, found
    return None


def _died(job: JobFolder, work: Path, run: _Run, timeout: float, limit: int | None) -> Problem:
    """The one problem of a child that ended without a result."""
    what, hint = _what_happened(run, timeout, limit)
    stack = _open_imports(work / "imports.txt")
    if not stack:  # not while importing job code: the end of the output may say why
        last = [ln.strip() for ln in run.output.splitlines() if ln.strip()]
        if hint == EXIT_HINT:
            hint = ""
        if run.returncode == 0 and not run.timed_out:
            what = "ended the process before it wrote its result"
        if last:
            hint = f"its last output: {last[-1][:200]}"
        meta = job.meta.display if job.meta is not None else "meta.json"
        return Problem(meta, (), f"checking the job {what}", hint, code="check-process")
    inner, outer = _app_of(job, stack[-1]), _app_of(job, stack[0])
    if inner is None or outer is None:
        return Problem(job.display(Path(stack[-1])), (), f"importing it {what}", hint, code="check-process")
    message = f"{inner[1].as_posix()}: importing it {what}"
    module = outer[1].relative_to(outer[1].parts[0]).parts[0].removesuffix(".py").split(".")[0]
    used = _first_use(job, outer[0], module)
    if used is None:
        return Problem(job.display(Path(stack[-1])), (), f"importing it {what}", hint, code="check-process")
    source, at = used
    return source.problem(at, message, hint, code="check-process")


def _child_problems(job: JobFolder, work: Path, run: _Run, timeout: float, limit: int | None) -> list[Problem]:
    result = _read_result(work / "result.json")
    if result is None:
        return [_died(job, work, run, timeout, limit)]
    if "usage_error" in result:
        raise UsageError(str(result["usage_error"]))
    if "internal_error" in result:
        raise RuntimeError(f"the job check failed: {result['internal_error']}")
    try:
        return [_problem_of(p) for p in result["problems"]]
    except (KeyError, TypeError, ValueError):
        return [Problem("meta.json", (), "checking the job gave a result that cannot be read", code="check-process")]


# --- the child's side -------------------------------------------------------------------------------------------


class _MarkingLoader(importlib.abc.Loader):
    """Writes ``+ FILE`` before and ``- FILE`` after a custom module runs, for the parent to name it if it dies."""

    def __init__(self, loader: Any, origin: str, fd: int) -> None:
        self._loader = loader
        self._origin = origin
        self._fd = fd

    def _mark(self, sign: str) -> None:
        os.write(self._fd, f"{sign} {json.dumps(self._origin)}\n".encode())

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        self._mark("+")  # an extension module runs its init here
        try:
            module: ModuleType | None = self._loader.create_module(spec)
            return module
        finally:
            self._mark("-")

    def exec_module(self, module: ModuleType) -> None:
        self._mark("+")
        try:
            self._loader.exec_module(module)
        finally:
            self._mark("-")

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self._loader, name)


class _MarkingFinder(importlib.abc.MetaPathFinder):
    """Sits just before the path finder and wraps the loader of every module found under a ``custom/`` folder."""

    def __init__(self, roots: list[str], fd: int) -> None:
        self._roots = [os.path.abspath(r) + os.sep for r in roots]
        self._fd = fd

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.origin and spec.loader is not None:
            origin = os.path.abspath(spec.origin)
            if any(origin.startswith(r) for r in self._roots):
                spec.loader = _MarkingLoader(spec.loader, origin, self._fd)
        return spec


def _innermost_custom(job: JobFolder, tb: TracebackType | None) -> tuple[str, int] | None:
    roots = [os.path.abspath(a.custom_dir) + os.sep for a in job.apps.values() if a.custom_dir is not None]
    found = None
    for frame, line in traceback.walk_tb(tb):
        name = os.path.abspath(frame.f_code.co_filename)
        if any(name.startswith(r) for r in roots):
            found = (job.display(Path(name)), line)
    return found


def _write_result(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _limit_memory(limit: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # the hard limit too: the job's code cannot lift it


def main(argv: Sequence[str] | None = None) -> int:
    """The child: validate one job folder, write ``{"problems": [...]}`` (or a usage / internal error) as JSON."""
    parser = argparse.ArgumentParser(prog="python -m flruntime.jobproc.check")
    parser.add_argument("job_dir")
    parser.add_argument("--result", required=True)
    parser.add_argument("--imports", required=True)
    parser.add_argument("--job-id", default=VALIDATE_JOB_ID)
    parser.add_argument("--site")
    parser.add_argument("--memory-limit", type=int, default=0)
    parser.add_argument("--request", required=True, help="a JSON file: overrides, allow, sys_path")
    args = parser.parse_args(argv)
    if args.memory_limit:
        _limit_memory(args.memory_limit)
    request = json.loads(Path(args.request).read_text(encoding="utf-8"))
    if request.get("sys_path"):
        sys.path[:] = [str(p) for p in request["sys_path"]]
    root = Path(args.job_dir)
    job, _ = discover(root)
    fd = os.open(args.imports, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    finder = _MarkingFinder([str(a.custom_dir) for a in job.apps.values() if a.custom_dir is not None], fd)
    at = next((i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder), len(sys.meta_path))
    sys.meta_path.insert(at, finder)
    policy = ImportPolicy(DEFAULT_ALLOWED_PREFIXES, None, tuple(request.get("allow", ())))
    out: dict[str, Any]
    try:
        report = validate_job(
            root, site=args.site, overrides=request.get("overrides") or {}, policy=policy, job_id=args.job_id
        )
        out = {"problems": [{**asdict(p), "path": list(p.path)} for p in report.problems]}
    except UsageError as exc:
        out = {"usage_error": str(exc)}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the job's code (a validate_args, sent_tasks) ended or broke the check
        where = _innermost_custom(job, exc.__traceback__)
        if where is None:
            out = {"internal_error": f"{type(exc).__name__}: {exc}"}
        else:
            if isinstance(exc, SystemExit):
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
                what = f"exited the process with code {code}"
            else:
                what = f"raised {type(exc).__name__}: {exc}"
            problem = Problem(where[0], (), f"this code {what} while the job was checked", line=where[1])
            out = {"problems": [{**asdict(problem), "path": []}]}
    _write_result(Path(args.result), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
