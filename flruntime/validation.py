"""The validation pipeline: load → schema → resolve → check, over a whole job folder.

:func:`validate_job` never raises for a bad job: every finding comes back in the
:class:`Report`, each located by file, line and JSON path. Only misuse of the call itself (an
unknown site or an override that names no variable) raises :class:`~flruntime.errors.UsageError`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.config.job import SERVER, JobFolder, discover
from flruntime.config.model import AppConfig, app_config
from flruntime.config.schema import check_schema
from flruntime.config.source import load_file
from flruntime.config.variables import Variable, substitute, system_variables, variables_of
from flruntime.errors import ConfigError, UsageError
from flruntime.graph.builder import SiteGraph, build_site
from flruntime.graph.check import CheckedApp, check_app
from flruntime.graph.locate import ImportPolicy
from flruntime.problems import JsonPath, Problem, Severity, errors_in
from flruntime.roles import Workflow

VALIDATE_JOB_ID = "validate_job"


@dataclass
class SiteScope:
    """What one app side is validated or built as: which app, which side, under which site name."""

    app: str
    side: str
    site: str


@dataclass
class Report:
    """Everything validation found out about a job folder."""

    job: JobFolder
    problems: list[Problem] = field(default_factory=list)
    apps: list[CheckedApp] = field(default_factory=list)
    variables: dict[tuple[str, str], dict[str, Variable]] = field(default_factory=dict)
    used: dict[tuple[str, str], dict[str, list[JsonPath]]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity error."""
        return errors_in(self.problems)

    @property
    def valid(self) -> bool:
        """True when no problem is an error."""
        return not self.errors


def scopes_of(job: JobFolder, site: str | None) -> list[SiteScope]:
    """Return the app sides to validate: all of them, or the one that ``site`` runs.

    Raises:
        UsageError: when ``site`` is given but not deployed by the job.
    """
    if site is not None:
        app = job.app_for(site)
        if app is None:
            known = [SERVER, *job.client_sites()]
            close = difflib.get_close_matches(site, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (the deploy map names: {', '.join(known)})"
            raise UsageError(f"site '{site}' runs no app of this job{hint}")
        return [SiteScope(app, SERVER if site == SERVER else "client", site)]
    out = []
    clients = job.client_sites()
    for app in job.apps:
        for side in job.sides_of(app):
            if side == SERVER:
                out.append(SiteScope(app, side, SERVER))
            else:
                named = [s for s in job.deploy_map.get(app, []) if s in clients]
                out.append(SiteScope(app, side, named[0] if named else "site-1"))
    return out


def scope_variables(
    job: JobFolder,
    scope: SiteScope,
    config_data: Any,
    display: str,
    *,
    job_id: str,
    workspace: str,
    overrides: Mapping[str, Any],
) -> dict[str, Variable]:
    """Collect the variables of one app side: meta, the config's own, system values, then overrides."""
    app = job.apps[scope.app]
    table: dict[str, Variable] = {}
    table.update({k: v for k, v in variables_of(job.meta_data, "meta").items() if not isinstance(v.value, list)})
    table.update(variables_of(config_data, display))
    table.update(
        system_variables(
            job_id=job_id,
            site=scope.site,
            workspace=workspace,
            app_dir=str(app.root),
            config_dir=str(app.config_dir),
            custom_dir=str(app.custom_dir or app.root / "custom"),
        )
    )
    table.update({k: Variable(k, v, "override") for k, v in overrides.items()})
    return table


def load_scope(
    job: JobFolder, scope: SiteScope, report: Report, *, job_id: str, workspace: str, overrides: Mapping[str, Any]
) -> AppConfig | None:
    """Load, schema-check and substitute one app side; problems go to ``report``."""
    app = job.apps[scope.app]
    path = app.config_file(scope.side)
    if path is None:
        return None  # discover() reported it
    source, problems = load_file(path, job.display(path))
    report.problems.extend(problems)
    if source is None:
        return None
    if not isinstance(source.data, dict):
        report.problems.append(source.problem((), "the config must be an object of keys", "", code="schema"))
        return None
    report.problems.extend(check_schema(scope.side, source))
    table = scope_variables(
        job, scope, source.data, source.display, job_id=job_id, workspace=workspace, overrides=overrides
    )
    data = {**source.data, **{k: v for k, v in overrides.items() if k in source.data}}
    result = substitute(data, table, source.problem)
    report.problems.extend(result.problems)
    report.variables[(scope.app, scope.side)] = table
    report.used[(scope.app, scope.side)] = result.used
    return app_config(scope.app, scope.side, source, result.data)


def _sent_tasks(app: CheckedApp) -> tuple[dict[str, JsonPath], bool]:
    """Tasks the server app's workflows send (task → workflow path) and whether all workflows are known."""
    sent: dict[str, JsonPath] = {}
    complete = True
    for spec in app.config.workflows:
        found = app.classes.get(spec.path)
        if spec.disabled:
            continue
        if found is None or not issubclass(found.cls, Workflow):
            complete = False
            continue
        tasks = found.cls.sent_tasks(spec.args)
        if tasks is None:  # decided by the workflow's own code
            complete = False
            continue
        for task in tasks:
            sent.setdefault(task, spec.path)
    return sent, complete


def _handles(app: CheckedApp, task: str) -> bool:
    """True when an executor that is not disabled handles ``task`` (by name or ``*`` pattern)."""
    return any(
        task == t or ("*" in t and fnmatch.fnmatchcase(task, t))
        for ex in app.config.executors
        if not ex.component.disabled
        for t in ex.tasks
    )


def _task_coverage(job: JobFolder, checked: list[CheckedApp]) -> list[Problem]:
    servers = [a for a in checked if a.config.side == SERVER]
    clients = [a for a in checked if a.config.side == "client"]
    if not servers or not clients:
        return []
    out: list[Problem] = []
    sent, complete = _sent_tasks(servers[0])
    src = servers[0].config.source
    for client in clients:
        for task, wf_path in sent.items():
            if not _handles(client, task):
                out.append(
                    src.problem(
                        wf_path,
                        f"task '{task}' is sent to clients but no executor in "
                        f"{client.config.source.display} handles it",
                        f'add an executor with "tasks": ["{task}"]',
                        code="task-coverage",
                    )
                )
        if not complete:
            continue
        for i, ex in enumerate(client.config.executors):
            if ex.component.disabled:
                continue
            for j, task in enumerate(ex.tasks):
                if "*" not in task and task not in sent:
                    out.append(
                        client.config.source.problem(
                            ("executors", i, "tasks", j),
                            f"no workflow sends task '{task}'",
                            f"the server's workflows send: {', '.join(sorted(sent)) or 'nothing'}",
                            code="task-unused",
                            severity=Severity.WARNING,
                        )
                    )
    return out


def _filter_chains(config: AppConfig) -> list[Problem]:
    out: list[Problem] = []
    defaults = {
        ("server", "task_data_filters"): "out",
        ("server", "task_result_filters"): "in",
        ("client", "task_data_filters"): "in",
        ("client", "task_result_filters"): "out",
    }
    for key, chains in (
        ("task_data_filters", config.task_data_filters),
        ("task_result_filters", config.task_result_filters),
    ):
        seen: dict[str, JsonPath] = {}
        for chain in chains:
            direction = chain.direction or defaults[(config.side, key)]
            for d in ("in", "out") if direction == "inout" else (direction,):
                for task in chain.tasks:
                    if f"{task}/{d}" in seen:
                        out.append(
                            config.source.problem(
                                chain.path + ("tasks",),
                                f"task '{task}' ({d}) already has a filter chain",
                                "merge the filters into one chain",
                                code="filter-chain",
                            )
                        )
                    seen.setdefault(f"{task}/{d}", chain.path)
    return out


def check_overrides(report: Report, overrides: Mapping[str, Any]) -> None:
    """Raise UsageError for an override that names no variable any config defines or uses."""
    known: set[str] = set()
    for key, table in report.variables.items():
        known |= {k for k, v in table.items() if v.origin not in ("override",)}
        known |= set(report.used.get(key, {}))
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "flruntime job show-variables JOB_DIR lists them"
            raise UsageError(f"override '{name}' names no variable of this job ({hint})")


def validate_job(
    job_dir: str | Path,
    *,
    site: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    policy: ImportPolicy | None = None,
    job_id: str = VALIDATE_JOB_ID,
    workspace: str = "<WORKSPACE>",
) -> Report:
    """Validate a job folder without running anything.

    Args:
        job_dir: the job folder.
        site: validate only the app this site runs (``server`` or a client name).
        overrides: ``-o key=value`` variable overrides.
        policy: the import policy (default: flruntime's allowlist).
        job_id: the value of ``{JOB_ID}``.
        workspace: the value of ``{WORKSPACE}``.

    Returns:
        A report with every problem found.

    Raises:
        UsageError: for an unknown site or an override that names no variable.
    """
    root = Path(job_dir)
    overrides = dict(overrides or {})
    policy = policy or ImportPolicy()
    if not root.is_dir():
        raise UsageError(f"job folder '{root}' does not exist" if not root.exists() else f"'{root}' is not a folder")
    job, problems = discover(root)
    report = Report(job, problems)
    if job.meta is not None:  # an empty meta.yaml (None) is reported as "expected an object, got null"
        report.problems.extend(check_schema("meta", job.meta))
    for scope in scopes_of(job, site):
        config = load_scope(job, scope, report, job_id=job_id, workspace=workspace, overrides=overrides)
        if config is None:
            continue
        app = check_app(config, policy.with_custom(job.apps[scope.app].custom_dir))
        report.problems.extend(app.problems)
        report.problems.extend(_filter_chains(config))
        report.apps.append(app)
    if site is None or not overrides:
        check_overrides(report, overrides)
    else:  # an override may set a variable of another app side (num_rounds, while building a client): look at all
        whole = Report(job, [])
        for scope in scopes_of(job, None):
            load_scope(job, scope, whole, job_id=job_id, workspace=workspace, overrides=overrides)
        check_overrides(whole, overrides)
    if site is None:
        report.problems.extend(_task_coverage(job, report.apps))
    report.problems = _unique(report.problems)
    return report


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, int, JsonPath, str]] = set()
    out = []
    for p in problems:
        key = (p.file, p.line, p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def build_job_site(
    job_dir: str | Path,
    site: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    policy: ImportPolicy | None = None,
    job_id: str = VALIDATE_JOB_ID,
    workspace: str = "<WORKSPACE>",
) -> SiteGraph:
    """Validate the app that ``site`` runs and build its component graph.

    Args:
        job_dir: the job folder.
        site: ``server`` or a client name.
        overrides: variable overrides.
        policy: the import policy.
        job_id: the value of ``{JOB_ID}``.
        workspace: the value of ``{WORKSPACE}``.

    Raises:
        ConfigError: with every problem, when the app is invalid.
        InstantiationError: when a constructor raises.
        UsageError: for an unknown site or override.
    """
    policy = policy or ImportPolicy()
    report = validate_job(job_dir, site=site, overrides=overrides, policy=policy, job_id=job_id, workspace=workspace)
    if report.errors or not report.apps:
        raise ConfigError(report.errors or [Problem("meta.json", (), f"no app for site '{site}'")])
    checked = report.apps[0]
    app = report.job.apps[checked.config.app]
    return build_site(checked, site=site, app_dir=app.root, custom_dir=app.custom_dir, policy=policy)
