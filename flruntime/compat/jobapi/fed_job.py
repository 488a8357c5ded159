"""``FedJob``: NVFlare's Python job API (``nvflare.job_config.api``), writing ordinary job folders.

``job.to(obj, target)`` places an object on the server (``"server"``), on every client (``"@ALL"``,
``to_clients``) or on one site (``"site-1"``). An object with an ``add_to_fed_job(job, ctx, **kwargs)`` method
(``ScriptRunner``, ``PTModel``, a user's class) adds itself; otherwise its role decides: an executor
handles ``tasks`` (default ``["*"]``), a workflow runs on the server (a component on a client), a filter goes
into the ``filter_type`` chain for ``tasks``, a ``str`` is a file or folder for ``custom/``, a ``dict`` holds
top-level config values; anything else is a component. ``export_job(root)`` writes ``root/<name>/``;
``simulator_run(workspace, ...)`` exports into a temporary folder and runs it in flruntime's simulator.

Apps: with only ``"server"`` and ``"@ALL"`` targets the job has one app ``app`` deployed to ``@ALL``; with
named sites, one app per target (``app_server``, ``app_site-1``, ...), as NVFlare names them. Where NVFlare 2.5 -
2.9 drops the site apps when ``@ALL`` is used too (a recipe's executor plus a receiver on ``site-1``), each named
site here gets what all clients get plus its own, and the job is deployed to the named sites.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from flruntime.compat.jobapi.export import AppFolder, SideConfig, recorded_args, write_job
from flruntime.errors import JobApiError

ALL_SITES = "@ALL"
SERVER_SITE_NAME = "server"
SPECIAL_CHARACTERS = '"!@#$%^&*()+?=,<>/'
_ADD_TO_JOB = "add_to_fed_job"


class JobTargetType:
    """Where an object goes: the server or a client."""

    SERVER = "server"
    CLIENT = "client"

    @classmethod
    def get_target_type(cls, target: str) -> str:
        """``server`` for the server, else ``client``."""
        return cls.SERVER if target == cls.SERVER else cls.CLIENT


class FilterType:
    """The chain a filter joins: task data (server → client) or task results (client → server)."""

    TASK_RESULT = "TASK_RESULT"
    TASK_DATA = "TASK_DATA"


class JobCtx:
    """What an ``add_to_fed_job`` method is told: the object, its target and the id asked for."""

    def __init__(self, obj: Any, target: str, comp_id: str | None) -> None:
        self.obj = obj
        self.target = target
        self.comp_id = comp_id


class FedApp:
    """What one target gets, with component ids unique within it (``component``, ``component1``, ...)."""

    def __init__(self, server: bool) -> None:
        self.server = server
        self.config = SideConfig()
        self._used_ids: list[str] = []
        self._ids_of: dict[int, str] = {}

    def generate_tracked_id(self, wanted: str = "") -> str:
        """``wanted``, or it with its number increased (or ``1`` appended) until unused; then mark it used."""
        cid = wanted
        while cid in self._used_ids:
            number = re.search(r"\d+", cid)
            cid = cid.replace(number.group(), str(int(number.group()) + 1)) if number else cid + "1"
        self._used_ids.append(cid)
        return cid

    def add_component(self, component: Any, comp_id: str | None = None) -> str:
        """Add a component once (the same object again returns its id)."""
        known = self._ids_of.get(id(component))
        if known is not None:
            return known
        cid = self.generate_tracked_id(comp_id or "component")
        self.config.components[cid] = component
        self._ids_of[id(component)] = cid
        return cid

    def add_executor(self, executor: Any, tasks: list[str] | None = None) -> None:
        """Add an executor for ``tasks`` (default ``["*"]``, every task)."""
        self.config.executors.append((list(tasks or ["*"]), executor))

    def add_controller(self, controller: Any, cid: str | None = None) -> None:
        """Add a workflow (server apps)."""
        self.config.workflows.append((self.generate_tracked_id(cid or "controller"), controller))

    def add_task_data_filter(self, tasks: list[str], task_filter: Any) -> None:
        """Add a filter to the task-data chain of ``tasks``."""
        self.config.add_filter(self.config.data_filters, tasks, task_filter)

    def add_task_result_filter(self, tasks: list[str], task_filter: Any) -> None:
        """Add a filter to the task-result chain of ``tasks``."""
        self.config.add_filter(self.config.result_filters, tasks, task_filter)

    def add_resources(self, resources: list[str]) -> None:
        """Add files and folders for ``custom/``.

        Raises:
            JobApiError: a resource that is neither.
        """
        for resource in resources:
            if not isinstance(resource, str):
                raise JobApiError(f"cannot add resource: resource must be a str but got {type(resource).__name__}")
            if os.path.isdir(resource):
                self.config.dirs.append(resource)
            elif os.path.isfile(resource):
                if resource not in self.config.scripts:
                    self.config.scripts.append(resource)
            else:
                raise JobApiError(f"cannot add resource {resource}: no such file or folder")

    def add_file_source(self, src_path: str, dest_dir: str | None = None, app_folder_type: str | None = None) -> None:
        """Add a file or folder for ``custom/`` (or ``config/``), placed in ``dest_dir`` there."""
        self.config.file_sources.append((src_path, dest_dir, app_folder_type))

    def add_params(self, args: dict[str, Any]) -> None:
        """Add top-level config values (``{"timeout": 600}``).

        Raises:
            JobApiError: not a dict.
        """
        if not isinstance(args, dict):
            raise JobApiError(f"params must be a dict, got {type(args).__name__}")
        self.config.params.update(args)


class ClientApp(FedApp):
    """A client target's app."""

    def __init__(self) -> None:
        super().__init__(server=False)


class ServerApp(FedApp):
    """The server's app."""

    def __init__(self) -> None:
        super().__init__(server=True)


def _is_instance(obj: Any, *paths: str) -> bool:
    """Isinstance against classes named by path, importing only what is already imported (no heavy imports)."""
    for path in paths:
        module, name = path.rsplit(".", 1)
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(obj, cls):
            return True
    return False


def _role(obj: Any) -> str:
    import flruntime.roles  # noqa: F401 - so _is_instance sees the module

    if _is_instance(obj, "flruntime.roles.Executor", "flruntime.compat.component.Executor"):
        return "executor"
    if _is_instance(obj, "flruntime.roles.Workflow", "flruntime.compat.controller.Controller"):
        return "controller"
    if _is_instance(obj, "flruntime.roles.Filter", "flruntime.compat.component.Filter"):
        return "filter"
    return "component"


def check_kwargs(args_to_check: dict[str, Any], args_expected: dict[str, bool]) -> None:
    """Refuse a missing required or an unexpected keyword argument (``args_expected``: name → required).

    Raises:
        JobApiError: naming the argument and what is supported.
    """
    info = {k: "required" if required else "optional" for k, required in args_expected.items()}
    if args_to_check and not args_expected:
        raise JobApiError(f"received args {list(args_to_check)}, but no args expected")
    for name, required in args_expected.items():
        if required and name not in (args_to_check or {}):
            raise JobApiError(f"Missing required arg '{name}'. Supported args: {info}")
    for name in args_to_check or {}:
        if name not in args_expected:
            raise JobApiError(f"Received unexpected arg '{name}'. Supported args: {info}")


class FedJob:
    """A job built in Python: objects placed on targets, exported as a job folder or simulated.

    Args:
        name: the job's name (its folder's name when exported).
        min_clients: ``min_clients`` of the meta file.
        mandatory_clients: sites the job cannot run without.
        meta_props: more keys for the meta file.

    Raises:
        JobApiError: a bad name, ``min_clients`` or ``mandatory_clients``.
    """

    def __init__(
        self,
        name: str = "fed_job",
        min_clients: int = 1,
        mandatory_clients: list[str] | None = None,
        meta_props: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise JobApiError(f"name must be a non-empty str, got {name!r}")
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise JobApiError(f"min_clients must be a positive int, got {min_clients!r}")
        if mandatory_clients is not None and not isinstance(mandatory_clients, list):
            raise JobApiError(f"mandatory_clients must be a list, got {type(mandatory_clients).__name__}")
        if meta_props is not None and not isinstance(meta_props, dict):
            raise JobApiError(f"meta_props must be a dict, got {type(meta_props).__name__}")
        self.name = name
        self.min_clients = min_clients
        self.mandatory_clients = mandatory_clients
        self.meta_props = dict(meta_props or {})
        self.clients: list[str] = []
        self.resource_specs: dict[str, dict[str, Any]] = {}
        self.app_packages: list[str] = []
        self._deploy_map: dict[str, FedApp] = {}
        self._components: dict[str, Any] = {}

    # -- placing objects -------------------------------------------------------------------------------------

    def set_up_client(self, target: str) -> None:
        """Called the first time something is placed on a client target (subclasses add their client parts)."""

    def _app(self, target: str) -> FedApp:
        app = self._deploy_map.get(target)
        if app is None:
            app = ServerApp() if target == SERVER_SITE_NAME else ClientApp()
            self._deploy_map[target] = app
            if target != SERVER_SITE_NAME:
                if target not in self.clients:
                    self.clients.append(target)
                self.set_up_client(target)
        return app

    def to(self, obj: Any, target: str, id: str | None = None, **kwargs: Any) -> Any:
        """Place ``obj`` on ``target`` (``"server"``, ``"@ALL"`` or a site name); see the module for how.

        Returns:
            What the object's ``add_to_fed_job`` returned, or the id the component got (None for resources).

        Raises:
            JobApiError: an empty object, a bad target, an object for the other side, or unexpected ``kwargs``.
        """
        if obj is None or (isinstance(obj, (str, dict, list)) and not obj):
            raise JobApiError("cannot add empty object to job")
        if isinstance(obj, FedApp):
            raise JobApiError("adding (ClientApp, ServerApp) is not allowed")
        self._validate_target(target)
        app = self._app(target)
        if isinstance(obj, str):
            app.add_resources([obj])
            return None
        if isinstance(obj, dict):
            app.add_params(obj)
            return None
        add_to_job = getattr(obj, _ADD_TO_JOB, None)
        role = _role(obj)
        if role == "executor" and target == SERVER_SITE_NAME and add_to_job is None:
            raise JobApiError("Use `job.to(executor, <client_name>)` or `job.to_clients(executor)` for Executors.")
        ctx = JobCtx(obj, target, id)
        if callable(add_to_job):
            result = add_to_job(self, ctx, **kwargs)
        elif role == "executor":
            check_kwargs(kwargs, {"tasks": False})
            self.add_executor(obj, kwargs.get("tasks") or ["*"], ctx)
            result = None
        elif role == "controller":
            check_kwargs(kwargs, {})
            self.add_controller(obj, ctx)
            result = None
        elif role == "filter":
            check_kwargs(kwargs, {"filter_type": True, "tasks": False})
            self.add_filter(obj, kwargs["filter_type"], kwargs.get("tasks") or ["*"], ctx)
            result = None
        else:
            check_kwargs(kwargs, {})
            result = app.add_component(obj, id)
        if self._components:
            self._add_referenced_components(obj, target)
        return result

    def _add_referenced_components(self, obj: Any, target: str) -> None:
        """Place the objects registered with :meth:`as_id` whose id one of ``obj``'s arguments holds."""
        state = vars(obj) if hasattr(obj, "__dict__") else {}
        values = list((recorded_args(obj) or {}).values()) + list(state.values())
        for value in values:
            if isinstance(value, str) and value in self._components:
                referenced = self._components.pop(value)
                self._deploy_map[target].add_component(referenced, value)
                self._add_referenced_components(referenced, target)

    def to_server(self, obj: Any, id: str | None = None, **kwargs: Any) -> Any:
        """Place ``obj`` on the server.

        Raises:
            JobApiError: ``obj`` is an executor.
        """
        if _role(obj) == "executor" and getattr(obj, _ADD_TO_JOB, None) is None:
            raise JobApiError("Use `job.to(executor, <client_name>)` or `job.to_clients(executor)` for Executors.")
        return self.to(obj, SERVER_SITE_NAME, id=id, **kwargs)

    def to_clients(self, obj: Any, id: str | None = None, **kwargs: Any) -> Any:
        """Place ``obj`` on every client (``@ALL``).

        Raises:
            JobApiError: ``obj`` is a workflow.
        """
        if _role(obj) == "controller" and getattr(obj, _ADD_TO_JOB, None) is None:
            raise JobApiError('Use `job.to(controller, "server")` or `job.to_server(controller)` for Controllers.')
        return self.to(obj, ALL_SITES, id=id, **kwargs)

    def as_id(self, obj: Any) -> str:
        """A new id for ``obj``: the object is placed, under that id, where an argument first refers to it."""
        cid = str(uuid.uuid4())
        self._components[cid] = obj
        return cid

    def add_file_to(
        self, src_path: str, target: str, dest_dir: str | None = None, app_folder_type: str | None = None
    ) -> None:
        """Ship a file or folder in ``target``'s app (``custom/`` or ``config/``, in ``dest_dir`` there)."""
        self._validate_target(target)
        self._app(target).add_file_source(src_path, dest_dir, app_folder_type)

    def add_file_to_server(
        self, src_path: str, dest_dir: str | None = None, app_folder_type: str | None = None
    ) -> None:
        """:meth:`add_file_to` the server."""
        self.add_file_to(src_path, SERVER_SITE_NAME, dest_dir, app_folder_type)

    def add_file_to_clients(
        self, src_path: str, dest_dir: str | None = None, app_folder_type: str | None = None
    ) -> None:
        """:meth:`add_file_to` every client."""
        self.add_file_to(src_path, ALL_SITES, dest_dir, app_folder_type)

    def set_app_packages(self, app_packages: list[str]) -> None:
        """Packages installed on the sites: their code is never copied into ``custom/``."""
        self.app_packages = list(app_packages or [])

    def add_resource_spec(self, site_name: str, resource_spec: dict[str, Any]) -> None:
        """Set a site's ``resource_spec`` in the meta file.

        Raises:
            JobApiError: the site has one already, or the spec is not a dict.
        """
        if site_name in self.resource_specs:
            raise JobApiError(f"{site_name} resource specs already exist.")
        if not isinstance(resource_spec, dict):
            raise JobApiError(f"resource_spec must be a dict, got {type(resource_spec).__name__}")
        self.resource_specs[site_name] = resource_spec

    @staticmethod
    def _validate_target(target: str) -> None:
        if not target or not isinstance(target, str):
            raise JobApiError("Must provide a valid target name")
        if target != ALL_SITES and any(c in SPECIAL_CHARACTERS for c in target):
            raise JobApiError(f"target {target} name contains invalid character")

    # -- what objects' add_to_fed_job methods call -----------------------------------------------------------

    def _get_app(self, ctx: JobCtx) -> FedApp:
        app = self._deploy_map.get(ctx.target)
        if app is None:
            kind = "a ServerApp" if ctx.target == SERVER_SITE_NAME else "a ClientApp"
            raise JobApiError(f"No app found for target '{ctx.target}' - missing {kind}")
        return app

    def add_component(self, comp_id: str | None, obj: Any, ctx: JobCtx) -> str:
        """Add a component to the target of ``ctx``; return the id it got."""
        cid = self._get_app(ctx).add_component(obj, comp_id or ctx.comp_id)
        if self._components:
            self._add_referenced_components(obj, ctx.target)
        return cid

    def add_controller(self, obj: Any, ctx: JobCtx) -> None:
        """Add a workflow to the server (on a client, a workflow-like object is a component)."""
        app = self._get_app(ctx)
        if ctx.target == SERVER_SITE_NAME:
            app.add_controller(obj, ctx.comp_id)
        else:
            app.add_component(obj, ctx.comp_id)

    def add_executor(self, obj: Any, tasks: list[str] | None, ctx: JobCtx) -> None:
        """Add an executor for ``tasks`` to the client target of ``ctx``.

        Raises:
            JobApiError: the target is the server.
        """
        if ctx.target == SERVER_SITE_NAME:
            raise JobApiError("Use `job.to(executor, <client_name>)` or `job.to_clients(executor)` for Executors.")
        self._get_app(ctx).add_executor(obj, tasks)

    def add_filter(self, obj: Any, filter_type: str, tasks: list[str] | None, ctx: JobCtx) -> None:
        """Add a filter to the task-data or task-result chain of ``tasks``.

        Raises:
            JobApiError: ``filter_type`` is neither.
        """
        app = self._get_app(ctx)
        if filter_type == FilterType.TASK_RESULT:
            app.add_task_result_filter(list(tasks or ["*"]), obj)
        elif filter_type == FilterType.TASK_DATA:
            app.add_task_data_filter(list(tasks or ["*"]), obj)
        else:
            raise JobApiError(
                f"Provided a filter for {ctx.target} without specifying a valid `filter_type`. "
                "Select from `FilterType.TASK_RESULT` or `FilterType.TASK_DATA`."
            )

    def add_resources(self, resources: list[str], ctx: JobCtx) -> None:
        """Add files and folders for ``custom/`` of the target of ``ctx``."""
        self._get_app(ctx).add_resources(resources)

    def add_file_source(self, src_path: str, dest_dir: str | None, app_folder_type: str | None, ctx: JobCtx) -> None:
        """Add a file or folder to the app of the target of ``ctx``."""
        self._get_app(ctx).add_file_source(src_path, dest_dir, app_folder_type)

    def add_params(self, args: dict[str, Any], ctx: JobCtx) -> None:
        """Add top-level config values to the app of the target of ``ctx``."""
        self._get_app(ctx).add_params(args)

    check_kwargs = staticmethod(check_kwargs)

    # -- export and run --------------------------------------------------------------------------------------

    def apps(self) -> tuple[list[AppFolder], dict[str, list[str]]]:
        """The job's apps and its deploy map (see the module).

        Raises:
            JobApiError: nothing is placed on the server, or nothing on any client.
        """
        if SERVER_SITE_NAME not in self._deploy_map:
            raise JobApiError('Missing server components! Deploy using `to(obj, "server") or `to_server(obj)`')
        server = self._deploy_map[SERVER_SITE_NAME].config
        sites = [t for t in self._deploy_map if t not in (SERVER_SITE_NAME, ALL_SITES)]
        everyone = self._deploy_map.get(ALL_SITES)
        if everyone is None and not sites:
            raise JobApiError("Missing client components! Deploy using `to(obj, <site>)` or `to_clients(obj)`")
        if everyone is not None and not sites:
            return [AppFolder("app", server=server, client=everyone.config)], {"app": [ALL_SITES]}
        apps = [AppFolder("app_server", server=server)]
        deploy = {"app_server": [SERVER_SITE_NAME]}
        for site in sites:
            own = self._deploy_map[site].config
            client = everyone.config.merged_with(own, site) if everyone is not None else own
            apps.append(AppFolder(f"app_{site}", client=client))
            deploy[f"app_{site}"] = [site]
        return apps, deploy

    def _meta(self, deploy_map: dict[str, list[str]]) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "resource_spec": self.resource_specs,
            "min_clients": self.min_clients,
            "deploy_map": deploy_map,
        }
        if self.mandatory_clients:
            meta["mandatory_clients"] = list(self.mandatory_clients)
        meta.update(self.meta_props)
        return meta

    def export_job(self, job_root: str | Path) -> Path:
        """Write the job folder ``job_root/<name>/`` (an earlier export there is replaced); return its path.

        Raises:
            JobApiError: see :meth:`apps`; an argument that cannot be written; a folder there that is not a job.
        """
        apps, deploy = self.apps()
        return write_job(Path(job_root) / self.name, self._meta(deploy), apps, self.app_packages)

    def _simulated_clients(self, n_clients: int | None, clients: list[str] | None) -> list[str] | None:
        named = [c for c in self.clients if c != ALL_SITES]
        if clients:
            return list(clients)
        if ALL_SITES in self.clients and not named:
            if not n_clients:
                raise JobApiError(
                    "Clients were not specified using to(). Please provide the number of clients to simulate."
                )
            if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 1:
                raise JobApiError(f"n_clients must be a positive int, got {n_clients!r}")
            return [f"site-{i}" for i in range(1, n_clients + 1)]
        if n_clients and n_clients != len(named):
            raise JobApiError(
                f"You already specified clients using `to()` ({', '.join(named)}). "
                "Don't use `n_clients` in simulator_run."
            )
        return named

    def simulator_run(
        self,
        workspace: str | Path,
        n_clients: int | None = None,
        clients: list[str] | None = None,
        threads: int | None = None,
        gpu: str | None = None,
        log_config: str | None = None,
    ) -> Any:
        """Export the job into a temporary folder and run it in flruntime's simulator.

        Args:
            workspace: the simulator's workspace (its ``server/`` holds the global model, ``results.json`` the
                summary).
            n_clients: simulate ``site-1`` … ``site-N`` (only when the job places objects on ``@ALL`` alone).
            clients: simulate these sites.
            threads: at most this many client tasks at once.
            gpu: GPU ids (``"0"``, ``"0,1"``): the run sees only these (``CUDA_VISIBLE_DEVICES``); the simulated
                clients are threads of one process, so they share them.
            log_config: accepted; the simulator logs each site to ``<workspace>/<site>/log.txt``.

        Returns:
            The simulator's result (``status``, ``rounds_completed``, ``workspace``, ...).

        Raises:
            JobApiError: bad clients (see :meth:`apps`).
            ConfigError: the exported job does not validate (each problem is printed first).
            JobFailedError: the job ran and did not complete.
        """
        from flruntime.environments import simulate_folder

        del log_config
        sites = self._simulated_clients(n_clients, clients)
        with tempfile.TemporaryDirectory(prefix="flruntime-job-") as tmp:
            root = self.export_job(tmp)
            return simulate_folder(root, workspace=Path(workspace), clients=sites, threads=threads, gpu=gpu)


def has_add_to_job_method(obj: Any) -> bool:
    """True when ``obj`` adds itself to a job (``add_to_fed_job``)."""
    return callable(getattr(obj, _ADD_TO_JOB, None))


def validate_object_for_job(name: str, obj: Any, obj_type: type | tuple[type, ...]) -> None:
    """Refuse ``obj`` unless it adds itself to a job or is an ``obj_type``.

    Raises:
        JobApiError: naming ``name`` and the types.
    """
    if has_add_to_job_method(obj) or isinstance(obj, obj_type):
        return
    raise JobApiError(f"{name} must be {_type_names(obj_type)} but got {type(obj).__name__}")


def _type_names(obj_type: type | tuple[type, ...]) -> str:
    types = obj_type if isinstance(obj_type, tuple) else (obj_type,)
    return " or ".join(t.__name__ for t in types)


__all__ = [
    "ALL_SITES",
    "SERVER_SITE_NAME",
    "ClientApp",
    "FedApp",
    "FedJob",
    "FilterType",
    "JobCtx",
    "JobTargetType",
    "ServerApp",
    "check_kwargs",
    "has_add_to_job_method",
    "validate_object_for_job",
]
