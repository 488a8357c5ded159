"""Time how long NVIDIA FLARE takes to load and build a server job config.

This script is not part of the flruntime package and is never imported by it.
It is executed by ``bench/validate.py`` as a subprocess, using the Python
interpreter of the separate NVFlare virtual environment
(``.venv-nvflare/bin/python``, with ``nvflare==2.9.0`` installed), so that the
benchmark can compare flruntime's config loading against NVFlare's.

Each measured load goes through NVFlare's own server-side configurator, the
same way an NVFlare server app starts a job:

1. ``nvflare.private.fed.server.server_json_config.ServerJsonConfigurator`` is
   constructed for the config file (this reads and parses the file).
2. Unless ``--no-authorizer`` is given, the server's component build
   authorizer (``nvflare.private.fed.utils.fed_utils.authorize_build_component``)
   is attached, as the server app runner does.
3. ``configure()`` resolves variables and instantiates every workflow and
   component class.

The configurator mutates its parsed config while building, so a fresh one is
made for every repetition. A throw-away workspace (with the ``startup`` and
``local`` folders that ``nvflare.apis.workspace.Workspace`` insists on, and the
``local/resources.json.default`` allow-list that provisioning writes) is
created in a temporary directory, so no running server is needed.

Output is a single JSON line on stdout, for example::

    {"tool": "nvflare", "version": "2.9.0", "seconds_per_load": 0.0123,
     "components": 200, "workflows": 1, "repeat": 5}

``seconds_per_load`` is the median over the repetitions; ``components`` counts
the objects built from the config's ``components`` list and ``workflows`` those
built from its ``workflows`` list.

Usage::

    .venv-nvflare/bin/python bench/_nvflare_load.py --write-sample /tmp/c.json
    .venv-nvflare/bin/python bench/_nvflare_load.py --config /tmp/c.json --repeat 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

_JOB_ID = "bench_job"
_SAMPLE_COUNT = 200

# Cheap NVFlare component classes used by --write-sample, cycled through in
# order. Each entry is (class path, constructor args).
_SAMPLE_CLASSES: list[tuple[str, dict[str, Any]]] = [
    (
        "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator",
        {},
    ),
    (
        "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator",
        {"expected_data_kind": "WEIGHTS"},
    ),
    (
        "nvflare.app_common.widgets.intime_model_selector.IntimeModelSelector",
        {"key_metric": "val_accuracy"},
    ),
    (
        "nvflare.app_common.widgets.validation_json_generator.ValidationJsonGenerator",
        {},
    ),
    (
        "nvflare.app_common.widgets.convert_to_fed_event.ConvertToFedEvent",
        {"events_to_convert": ["analytix_log_stats"], "fed_event_prefix": "fed."},
    ),
]


def make_sample_config(count: int = _SAMPLE_COUNT) -> dict[str, Any]:
    """Build an NVFlare server job config with one workflow and many components.

    Args:
        count: Number of entries to put in the ``components`` list.

    Returns:
        A format_version 2 server config as a plain dict, ready for JSON.
    """
    components = []
    for i in range(count):
        path, args = _SAMPLE_CLASSES[i % len(_SAMPLE_CLASSES)]
        components.append({"id": f"comp_{i:04d}", "path": path, "args": dict(args)})
    # ScatterAndGather looks these ids up only when the job starts, but point
    # them at real entries so the config is a valid job config as well.
    return {
        "format_version": 2,
        "workflows": [
            {
                "id": "scatter_and_gather",
                "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
                "args": {
                    "min_clients": 2,
                    "num_rounds": 3,
                    "aggregator_id": "comp_0001",
                    "shareable_generator_id": "comp_0000",
                    "persistor_id": "",
                    "train_task_name": "train",
                    "train_timeout": 0,
                },
            }
        ],
        "components": components,
    }


def write_sample(path: str, count: int = _SAMPLE_COUNT) -> None:
    """Write the sample config from :func:`make_sample_config` to a file.

    Args:
        path: Destination file; parent folders are created when missing.
        count: Number of components to generate.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(make_sample_config(count), fh, indent=2)
        fh.write("\n")


def _quiet_nvflare() -> None:
    """Keep NVFlare's log records (e.g. allow-list notices) off the output."""
    logging.getLogger("nvflare").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)


def _make_workspace(root: str):
    """Create the minimal folder layout NVFlare's Workspace accepts.

    Args:
        root: An existing empty directory to use as the workspace root.

    Returns:
        A ``nvflare.apis.workspace.Workspace`` for the server site.
    """
    from nvflare.apis.workspace import Workspace
    from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST

    os.makedirs(os.path.join(root, "startup"), exist_ok=True)
    os.makedirs(os.path.join(root, "local"), exist_ok=True)
    # A provisioned server gets local/resources.json.default holding NVFlare's
    # default class allow-list; the build authorizer reads (and caches) it.
    # Without the file it falls back to rebuilding the default list for every
    # component and logs a warning, which a real deployment would not do.
    resources = {
        "format_version": 2,
        "class_list_enforcement_mode": "enforce",
        "class_allow_list": list(DEFAULT_CLASS_ALLOW_LIST),
    }
    with open(os.path.join(root, "local", "resources.json.default"), "w", encoding="utf-8") as fh:
        json.dump(resources, fh)
    return Workspace(root_dir=root, site_name="server")


class _Loader:
    """Holds the fixed context needed to run NVFlare's server configurator."""

    def __init__(self, config_path: str, workspace_root: str, authorize: bool) -> None:
        self.config_path = os.path.abspath(config_path)
        self.app_root = os.path.dirname(self.config_path)
        self.authorize = authorize
        self.workspace = _make_workspace(workspace_root)
        self.args = argparse.Namespace(
            workspace=workspace_root,
            job_id=_JOB_ID,
            server_config=os.path.basename(self.config_path),
            set=[],
        )

    def load_once(self):
        """Parse the config file and build every component in it.

        Returns:
            The configured ``ServerJsonConfigurator``.
        """
        from nvflare.apis.fl_constant import FLContextKey
        from nvflare.apis.fl_context import FLContext
        from nvflare.fuel.utils.config_service import ConfigService
        from nvflare.private.fed.server.server_json_config import ServerJsonConfigurator
        from nvflare.private.fed.utils.fed_utils import authorize_build_component

        # configure() registers the app folder with this process-wide service;
        # start each load from a clean slate so repetitions are independent.
        ConfigService.reset()
        conf = ServerJsonConfigurator(
            workspace_obj=self.workspace,
            config_file_name=self.config_path,
            args=self.args,
            app_root=self.app_root,
            kv_list=None,
        )
        if self.authorize:
            fl_ctx = FLContext()
            fl_ctx.set_prop(FLContextKey.ARGS, self.args, sticky=False)
            fl_ctx.set_prop(FLContextKey.APP_ROOT, self.app_root, private=True, sticky=False)
            fl_ctx.set_prop(FLContextKey.WORKSPACE_OBJECT, self.workspace, private=True)
            fl_ctx.set_prop(FLContextKey.CURRENT_JOB_ID, _JOB_ID, private=False, sticky=False)
            fl_ctx.set_prop(FLContextKey.CURRENT_RUN, _JOB_ID, private=False, sticky=False)
            # A deployed server reads this from the job's meta.json; an empty
            # meta means "no custom code", which is what this config has.
            fl_ctx.set_prop(FLContextKey.JOB_META, {}, private=True, sticky=False)
            conf.set_component_build_authorizer(authorize_build_component, fl_ctx=fl_ctx, event_handlers=[])
        conf.configure()
        return conf


def _nvflare_version() -> str:
    try:
        from importlib.metadata import version

        return version("nvflare")
    except Exception:  # pragma: no cover - metadata missing is unexpected
        import nvflare

        return str(getattr(nvflare, "__version__", "unknown"))


def run(config_path: str, repeat: int, authorize: bool = True) -> dict[str, Any]:
    """Load and build ``config_path`` ``repeat`` times and summarise the timing.

    Args:
        config_path: Path of the NVFlare server job config (JSON).
        repeat: Number of timed loads; one untimed warm-up load runs first so
            that module imports are not counted.
        authorize: Whether to attach the server's component build authorizer.

    Returns:
        The result record printed by :func:`main`.
    """
    with tempfile.TemporaryDirectory(prefix="nvflare_ws_") as ws_root:
        loader = _Loader(config_path, ws_root, authorize)
        conf = loader.load_once()  # warm-up: imports every component module
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            conf = loader.load_once()
            times.append(time.perf_counter() - start)
    n_workflows = len(conf.workflows)
    return {
        "tool": "nvflare",
        "version": _nvflare_version(),
        "seconds_per_load": statistics.median(times),
        "components": len(conf.components) - n_workflows,
        "workflows": n_workflows,
        "repeat": repeat,
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="NVFlare server job config (JSON) to load")
    parser.add_argument("--repeat", type=int, default=5, help="number of timed loads (default 5)")
    parser.add_argument(
        "--write-sample",
        metavar="PATH",
        help=f"write a sample config with {_SAMPLE_COUNT} components to PATH and exit",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=_SAMPLE_COUNT,
        help=f"number of components for --write-sample (default {_SAMPLE_COUNT})",
    )
    parser.add_argument(
        "--no-authorizer",
        action="store_true",
        help="skip the server's component build authorizer",
    )
    args = parser.parse_args(argv)
    if args.write_sample is None and args.config is None:
        parser.error("one of --config or --write-sample is required")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.count < 1:
        parser.error("--count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        Process exit status.
    """
    args = _parse_args(argv)
    if args.write_sample is not None:
        write_sample(args.write_sample, args.count)
        return 0
    _quiet_nvflare()
    # NVFlare prints some errors itself; keep stdout for the JSON line only.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result = run(args.config, args.repeat, authorize=not args.no_authorizer)
    finally:
        sys.stdout = real_stdout
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
