"""Class resolution: registry names, NVFlare paths and names, plugins, the allowlist and a job's custom/ code.

Every expectation is the exact ``Problem.format()`` line a user sees, located in a real job folder.
"""

from __future__ import annotations

import copy
import difflib
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobkit import CLIENT, PARTS, SERVER, SERVER_FILE, line_of, make_job, write

import flruntime
from flruntime.cli.main import main
from flruntime.graph.aliases import NVFLARE_ALIASES, NVFLARE_REEXPORTS
from flruntime.graph.locate import ImportPolicy, locate
from flruntime.graph.nvflare_names import NVFLARE_NAMES
from flruntime.graph.registry import BUILTIN_NAMES, plugin_names, short_names

SAG = "flruntime.components.workflows.scatter_and_gather.ScatterAndGather"
NV_SAG = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
README_TABLE = "see the README's table of supported NVFlare classes"
#: A custom module that parses a command line it does not get when imported (argparse exits with 2).
HELPER = "import argparse\n\nargparse.ArgumentParser().parse_args(['--no-such-option'])\n"


def server_with(*extra: dict[str, Any]) -> dict[str, Any]:
    """The default server config with ``extra`` components appended (as components[2], [3], ...)."""
    server = copy.deepcopy(SERVER)
    server["components"].extend(copy.deepcopy(list(extra)))
    return server


def formatted(job: Path, **kw: Any) -> list[str]:
    return [p.format() for p in flruntime.validate_job(job, **kw).problems]


def at(job: Path, json_path: str, needle: str, text: str, nth: int = 1) -> str:
    """The expected line for a problem in the server config at the line holding ``needle``."""
    return f"{SERVER_FILE}:{line_of(job / SERVER_FILE, needle, nth)}: {json_path}: {text}"


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path holding the package ``fltest_lib`` (outside every default allowlist prefix)."""
    root = tmp_path / "lib"
    write(
        root / "fltest_lib" / "__init__.py",
        textwrap.dedent(
            """
            class Thing:
                def __init__(self, size: int = 1) -> None:
                    self.size = size
            """
        ),
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("fltest_lib", None)


# ---------------------------------------------------------------- import steps


@pytest.mark.parametrize(
    ("class_path", "extra_prefixes", "text"),
    [
        pytest.param(
            "nosuch.Thing",
            ("nosuch.",),
            "no module named 'nosuch' (check the spelling, or install the package)",
            id="missing-top-level-module",
        ),
        pytest.param(
            "flruntime.graph.locat.X",
            (),
            "module 'flruntime.graph' has no submodule 'locat' (did you mean 'flruntime.graph.locate'?)",
            id="missing-submodule-with-suggestion",
        ),
        pytest.param(
            "flruntime.graph.zzzzzz.X",
            (),
            "module 'flruntime.graph' has no submodule 'zzzzzz' (check the spelling)",
            id="missing-submodule-without-suggestion",
        ),
        pytest.param(
            "flruntime.graph.locate.Locatd",
            (),
            "module 'flruntime.graph.locate' has no class 'Locatd' (did you mean 'Located'?)",
            id="missing-class-with-suggestion",
        ),
        pytest.param(
            "flruntime.graph.locate.Qqqqqqq",
            (),
            "module 'flruntime.graph.locate' has no class 'Qqqqqqq' (check the spelling)",
            id="missing-class-without-suggestion",
        ),
        pytest.param(
            "flruntime.graph.locate.locate",
            (),
            "'flruntime.graph.locate.locate' is a function, not a class (point to a class)",
            id="function-not-class",
        ),
        pytest.param(
            "flruntime.graph.locate.DEFAULT_ALLOWED_PREFIXES",
            (),
            "'flruntime.graph.locate.DEFAULT_ALLOWED_PREFIXES' is a tuple, not a class (point to a class)",
            id="constant-not-class",
        ),
    ],
)
def test_import_steps(tmp_path: Path, class_path: str, extra_prefixes: tuple[str, ...], text: str) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": class_path}))
    policy = ImportPolicy(extra_prefixes=extra_prefixes)
    assert formatted(job, policy=policy) == [at(job, "$.components[2].path", f'"path": "{class_path}"', text)]


@pytest.mark.parametrize(
    ("module_text", "class_path", "text"),
    [
        pytest.param(
            "raise RuntimeError('boom')\n",
            "broken.Thing",
            "importing module 'broken' failed: RuntimeError: boom (fix the error in that module)",
            id="module-raises",
        ),
        pytest.param(
            "raise SystemExit(7)\n",
            "broken.Thing",
            "custom/broken.py: importing it exited the process with code 7 "
            "(move that code under if __name__ == '__main__')",
            id="module-raises-system-exit",
        ),
        pytest.param(
            "import sys\nsys.exit('usage: broken')\n",
            "broken.Thing",
            "custom/broken.py: importing it exited the process with code 1 and the message 'usage: broken' "
            "(move that code under if __name__ == '__main__')",
            id="module-exits-with-a-message",
        ),
        pytest.param(
            "import sys\nsys.exit()\n",
            "broken.Thing",
            "custom/broken.py: importing it exited the process with code 0 "
            "(move that code under if __name__ == '__main__')",
            id="module-exits-without-a-code",
        ),
        pytest.param(
            "import helper\n",
            "broken.Thing",
            "custom/helper.py: importing it exited the process with code 2 "
            "(move that code under if __name__ == '__main__')",
            id="module-imports-a-module-that-parses-its-command-line",
        ),
        pytest.param(
            "class Stop(BaseException):\n    pass\n\n\nraise Stop('halt')\n",
            "broken.Thing",
            "importing module 'broken' failed: Stop: halt (fix the error in that module)",
            id="module-raises-a-base-exception",
        ),
        pytest.param(
            "import fltest_no_such_dependency\n",
            "broken.Thing",
            "importing module 'broken' failed: No module named 'fltest_no_such_dependency' "
            "(install the package that provides 'fltest_no_such_dependency')",
            id="module-imports-missing-package",
        ),
        pytest.param(
            "x = (\n",
            "broken.Thing",
            "importing module 'broken' failed: SyntaxError: '(' was never closed (broken.py, line 1) "
            "(fix the error in that module)",
            id="module-syntax-error",
        ),
        pytest.param(
            "def make_thing():\n    return 1\n",
            "broken.make_thing",
            "'broken.make_thing' is a function, not a class (point to a class)",
            id="custom-function-not-class",
        ),
        pytest.param(
            "class Thing:\n    pass\n",
            "broken.Thnig",
            "module 'broken' has no class 'Thnig' (did you mean 'Thing'?)",
            id="custom-missing-class",
        ),
    ],
)
def test_custom_module_failures(tmp_path: Path, module_text: str, class_path: str, text: str) -> None:
    job = make_job(
        tmp_path / "job",
        server=server_with({"id": "thing", "path": class_path}),
        custom={"parts.py": PARTS, "broken.py": module_text, "helper.py": HELPER},
    )
    assert formatted(job) == [at(job, "$.components[2].path", f'"path": "{class_path}"', text)]
    assert "broken" not in sys.modules


# ---------------------------------------------------------------- allowlist


@pytest.mark.parametrize(
    ("class_path", "prefix"),
    [
        pytest.param("os.PathLike", "os.", id="stdlib"),
        pytest.param("subprocess.Popen", "subprocess.", id="subprocess"),
        pytest.param("fltest_lib.Thing", "fltest_lib.", id="package-on-sys-path"),
        pytest.param("torch.Tensor", "torch.", id="torch-outside-nn-and-optim"),
    ],
)
def test_outside_allowlist(tmp_path: Path, lib: Path, class_path: str, prefix: str) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": class_path}))
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.components[2].path",
            f'"path": "{class_path}"',
            f"class path '{class_path}' is outside the import allowlist (allow it with --allow {prefix} "
            f"(or FLRUNTIME_ALLOW={prefix}), or put the code in the app's custom/ folder)",
        )
    ]
    assert [p.code for p in report.problems] == ["not-allowed"]
    assert "fltest_lib" not in sys.modules  # refused before anything was imported


def test_policy_extra_prefixes_allow_a_package(tmp_path: Path, lib: Path) -> None:
    job = make_job(
        tmp_path / "job", server=server_with({"id": "thing", "path": "fltest_lib.Thing", "args": {"size": 2}})
    )
    report = flruntime.validate_job(job, policy=ImportPolicy(extra_prefixes=("fltest_lib.",)))
    assert report.problems == []
    assert report.apps[0].classes[("components", 2)].via == "import"
    graph = flruntime.build_job_site(job, "server", policy=ImportPolicy(extra_prefixes=("fltest_lib.",)))
    assert graph.components["thing"].size == 2


def test_policy_extra_prefix_is_a_prefix_not_a_substring(tmp_path: Path, lib: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": "fltest_lib.Thing"}))
    report = flruntime.validate_job(job, policy=ImportPolicy(extra_prefixes=("lib.",)))
    assert [p.code for p in report.problems] == ["not-allowed"]


@pytest.mark.parametrize(
    ("argv_extra", "env"),
    [
        pytest.param(["--allow", "fltest_lib"], None, id="allow-option-without-dot"),
        pytest.param(["--allow", "fltest_lib."], None, id="allow-option-with-dot"),
        pytest.param([], "fltest_lib", id="env-variable"),
        pytest.param([], "other., fltest_lib.", id="env-variable-list"),
    ],
)
def test_cli_allow(
    tmp_path: Path,
    lib: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv_extra: list[str],
    env: str | None,
) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": "fltest_lib.Thing"}))
    monkeypatch.delenv("FLRUNTIME_ALLOW", raising=False)
    assert main(["validate", str(job)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        at(
            job,
            "$.components[2].path",
            '"path": "fltest_lib.Thing"',
            "class path 'fltest_lib.Thing' is outside the import allowlist (allow it with --allow fltest_lib. "
            "(or FLRUNTIME_ALLOW=fltest_lib.), or put the code in the app's custom/ folder)",
        )
    ]
    assert out.err == "demo: 1 problem(s)\n"
    if env is not None:
        monkeypatch.setenv("FLRUNTIME_ALLOW", env)
    assert main(["validate", str(job), *argv_extra]) == 0
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "demo: valid\n")


# ---------------------------------------------------------------- NVFlare paths and names


def _unsupported_nvflare_path() -> str:
    """An NVFlare class path with no alias and no near alias at test time (the map grows)."""
    by_class = {p.rsplit(".", 1)[1] for p in NVFLARE_ALIASES}
    for name, modules in sorted(NVFLARE_NAMES.items()):
        path = f"{modules[0]}.{name}"
        if path in NVFLARE_ALIASES or name in by_class:
            continue
        if not difflib.get_close_matches(path, list(NVFLARE_ALIASES), n=1, cutoff=0.6):
            return path
    raise AssertionError("every NVFlare class has an alias: pick another unsupported example")


def _unsupported_nvflare_name() -> str:
    """An NVFlare short name defined in one module whose class has no alias and no registry name."""
    path = _unsupported_nvflare_path()
    return path.rsplit(".", 1)[1]


def test_nvflare_path_not_supported(tmp_path: Path) -> None:
    path = _unsupported_nvflare_path()
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": path}))
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(
            job,
            "$.components[2].path",
            f'"path": "{path}"',
            f"NVFlare class '{path}' is not supported yet ({README_TABLE})",
        )
    ]
    assert [p.code for p in report.problems] == ["unsupported"]


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        pytest.param(
            "nvflare.app_common.workflows.old_module.ScatterAndGather",
            f"did you mean '{NV_SAG}'?",
            id="known-class-in-another-module",
        ),
        pytest.param("monai_nvflare.fltest_module.FltestClass", README_TABLE, id="monai-nvflare"),
    ],
)
def test_nvflare_path_not_supported_hints(tmp_path: Path, path: str, hint: str) -> None:
    assert path not in NVFLARE_ALIASES
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": path}))
    assert formatted(job) == [
        at(job, "$.components[2].path", f'"path": "{path}"', f"NVFlare class '{path}' is not supported yet ({hint})")
    ]


def test_nvflare_path_aliased() -> None:
    found = locate(NV_SAG, ImportPolicy())
    assert (found.target, found.via) == (SAG, "alias")
    assert f"{found.cls.__module__}.{found.cls.__qualname__}" == SAG


def test_nvflare_paths_in_a_job_resolve_through_the_alias_map(tmp_path: Path) -> None:
    server = {
        "format_version": 2,
        "workflows": [{"id": "sag", "path": NV_SAG, "args": {"min_clients": 1, "num_rounds": 2}}],
        "components": [
            {
                "id": "aggregator",
                "path": "nvflare.app_common.aggregators.intime_accumulate_model_aggregator."
                "InTimeAccumulateWeightedAggregator",
            },
            {
                "id": "shareable_generator",
                "path": "nvflare.app_common.shareablegenerators.full_model_shareable_generator."
                "FullModelShareableGenerator",
            },
        ],
    }
    job = make_job(tmp_path / "job", server=server)
    report = flruntime.validate_job(job, site="server")
    assert report.problems == []
    classes = report.apps[0].classes
    assert classes[("workflows", 0)].target == SAG
    assert {found.via for found in classes.values()} == {"alias"}


# NVFlare loads `module.Class` with import_module + getattr, so a module that imports an aliased class names it too
NV_LAUNCHER_EXEC = "nvflare.app_common.executors.client_api_launcher_executor.ClientAPILauncherExecutor"
#: the executor path of NVFlare's sklearn_linear / sklearn_kmeans / sklearn_svm / xgboost_tree job templates
SKLEARN_LAUNCHER_EXEC = "nvflare.app_opt.pt.client_api_launcher_executor.ClientAPILauncherExecutor"


@pytest.mark.parametrize(("path", "canonical"), sorted(NVFLARE_REEXPORTS.items()), ids=sorted(NVFLARE_REEXPORTS))
def test_reexported_nvflare_path_resolves_like_its_canonical_path(path: str, canonical: str) -> None:
    found = locate(path, ImportPolicy())
    assert (found.target, found.via) == (NVFLARE_ALIASES[canonical], "alias")
    assert found.cls is locate(canonical, ImportPolicy()).cls


def test_reexports_name_the_same_class_as_an_aliased_path() -> None:
    assert set(NVFLARE_REEXPORTS).isdisjoint(NVFLARE_ALIASES)
    assert [c for c in NVFLARE_REEXPORTS.values() if c not in NVFLARE_ALIASES] == []
    assert [p for p, c in NVFLARE_REEXPORTS.items() if p.rsplit(".", 1)[1] != c.rsplit(".", 1)[1]] == []
    assert NVFLARE_REEXPORTS[SKLEARN_LAUNCHER_EXEC] == NV_LAUNCHER_EXEC


def test_sklearn_template_executor_path_validates(tmp_path: Path) -> None:
    from clientkit import NVF_FILE_PIPE, NVF_SUBPROCESS, client_job

    executor = {"path": SKLEARN_LAUNCHER_EXEC, "args": {"pipe_id": "pipe", "launcher_id": "launcher"}}
    components = [
        {"id": "pipe", "path": NVF_FILE_PIPE, "args": {"mode": "PASSIVE", "root_path": "{WORKSPACE}/{JOB_ID}"}},
        {"id": "launcher", "path": NVF_SUBPROCESS, "args": {"script": "python3 -u custom/train.py"}},
    ]
    job = client_job(tmp_path / "job", executor, components=components)
    report = flruntime.validate_job(job, site="site-1")
    assert [p.format() for p in report.problems] == []
    (found,) = [f for app in report.apps for f in app.classes.values() if f.cls.__name__ == "ClientAPILauncherExecutor"]
    assert (found.target, found.via) == (NVFLARE_ALIASES[NV_LAUNCHER_EXEC], "alias")


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        pytest.param(
            "nvflare.app_opt.pt.made_up_module.ClientAPILauncherExecutor",
            f"did you mean '{NV_LAUNCHER_EXEC}'?",
            id="made-up-module",
        ),
        pytest.param(
            "nvflare.app_opt.tf.client_api_launcher_executor.PTClientAPILauncherExecutor",
            "did you mean 'nvflare.app_opt.pt.client_api_launcher_executor.PTClientAPILauncherExecutor'?",
            id="class-the-module-does-not-import",
        ),
        pytest.param("nvflare.app_opt.pt.ScatterAndGather", f"did you mean '{NV_SAG}'?", id="package-without-it"),
    ],
)
def test_nvflare_path_no_module_reexports_is_still_refused(tmp_path: Path, path: str, hint: str) -> None:
    assert path not in NVFLARE_ALIASES and path not in NVFLARE_REEXPORTS
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "path": path}))
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        at(job, "$.components[2].path", f'"path": "{path}"', f"NVFlare class '{path}' is not supported yet ({hint})")
    ]
    assert [p.code for p in report.problems] == ["unsupported"]


def test_registry_short_name() -> None:
    found = locate("ScatterAndGather", ImportPolicy(), by_name=True)
    assert (found.target, found.via) == (BUILTIN_NAMES["ScatterAndGather"], "registry")


def test_nvflare_short_name_resolves_to_the_nvflare_path(tmp_path: Path) -> None:
    name = _unsupported_nvflare_name()
    assert name not in short_names()
    full = f"{NVFLARE_NAMES[name][0]}.{name}"
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "name": name}))
    assert formatted(job) == [
        at(
            job,
            "$.components[2].name",
            f'"name": "{name}"',
            f"NVFlare class '{full}' is not supported yet ({README_TABLE})",
        )
    ]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, id=n)
        for n, modules in sorted(NVFLARE_NAMES.items())
        if len(modules) == 1 and f"{modules[0]}.{n}" in NVFLARE_ALIASES
    ],
)
def test_nvflare_short_names_of_aliased_classes(name: str) -> None:
    found = locate(name, ImportPolicy(), by_name=True)
    expected = BUILTIN_NAMES.get(name) or NVFLARE_ALIASES[f"{NVFLARE_NAMES[name][0]}.{name}"]
    assert found.target == expected
    assert found.via == ("registry" if name in BUILTIN_NAMES else "alias")


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        pytest.param("NPTrainer", "nvflare.app_common.ccwf.comps.np_trainer, nvflare.app_common.np.np_trainer"),
        pytest.param("FedOpt", "nvflare.app_opt.pt.fedopt_ctl, nvflare.app_opt.tf.fedopt_ctl"),
    ],
)
def test_ambiguous_nvflare_name(tmp_path: Path, name: str, modules: str) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "name": name}))
    assert formatted(job) == [
        at(
            job,
            "$.components[2].name",
            f'"name": "{name}"',
            f"NVFlare name '{name}' is defined in several modules ({modules}) (use \"path\" with the full class path)",
        )
    ]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        pytest.param("ScaterAndGather", "did you mean 'ScatterAndGather'?", id="with-suggestion"),
        pytest.param("Qqqqqqqqqq", 'use "path" with the full class path', id="without-suggestion"),
    ],
)
def test_unknown_short_name(tmp_path: Path, name: str, hint: str) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "name": name}))
    assert formatted(job) == [
        at(job, "$.components[2].name", f'"name": "{name}"', f"unknown component name '{name}' ({hint})")
    ]


def test_class_path_key_is_located(tmp_path: Path) -> None:
    job = make_job(tmp_path / "job", server=server_with({"id": "thing", "class_path": "parts.Nett"}))
    assert formatted(job) == [
        at(
            job,
            "$.components[2].class_path",
            '"class_path": "parts.Nett"',
            "module 'parts' has no class 'Nett' (did you mean 'Net'?)",
        )
    ]


# ---------------------------------------------------------------- entry-point plugins

PLUGIN = textwrap.dedent(
    """
    from typing import Any

    from flruntime.roles import Aggregator


    class DemoAggregator(Aggregator):
        def __init__(self, factor: float = 1.0) -> None:
            self.factor = factor

        def accept(self, site: str, result: Any, ctx: Any) -> bool:
            return True

        def aggregate(self, ctx: Any) -> Any:
            return None

        def reset(self, ctx: Any) -> None:
            pass


    class Helper:
        def __init__(self, size: int = 1) -> None:
            self.size = size
    """
)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed plugin distribution (a dist-info folder on sys.path) with two entry points."""
    root = tmp_path / "site"
    write(root / "fltest_plugin" / "__init__.py", PLUGIN)
    dist = root / "fltest_plugin-1.0.dist-info"
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: fltest-plugin\nVersion: 1.0\n")
    write(
        dist / "entry_points.txt",
        "[flruntime.components]\nDemoAggregator = fltest_plugin:DemoAggregator\nFedAvg = fltest_plugin:Helper\n",
    )
    plugin_names.cache_clear()
    monkeypatch.syspath_prepend(str(root))
    yield root
    plugin_names.cache_clear()
    sys.modules.pop("fltest_plugin", None)


def test_plugin_names_are_found(plugin: Path) -> None:
    assert plugin_names() == {"DemoAggregator": "fltest_plugin.DemoAggregator", "FedAvg": "fltest_plugin.Helper"}
    assert short_names()["FedAvg"] == BUILTIN_NAMES["FedAvg"]  # built-ins win over plugins
    found = locate("DemoAggregator", ImportPolicy(), by_name=True)
    assert (found.target, found.via) == ("fltest_plugin.DemoAggregator", "registry")


def test_plugin_component_in_a_job(tmp_path: Path, plugin: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["components"][1] = {"id": "aggregator", "name": "DemoAggregator", "args": {"factor": 0.5}}
    server["components"].append({"id": "helper", "path": "fltest_plugin.Helper", "args": {"size": 3}})
    job = make_job(tmp_path / "job", server=server)
    report = flruntime.validate_job(job)
    assert report.problems == []
    assert report.apps[0].classes[("components", 2)].via == "import"  # plugin modules are importable by path
    graph = flruntime.build_job_site(job, "server")
    assert graph.components["aggregator"].factor == 0.5
    assert graph.components["helper"].size == 3


def test_plugin_arguments_are_checked(tmp_path: Path, plugin: Path) -> None:
    server = copy.deepcopy(SERVER)
    server["components"][1] = {"id": "aggregator", "name": "DemoAggregator", "args": {"factr": 0.5}}
    job = make_job(tmp_path / "job", server=server)
    assert formatted(job) == [
        at(
            job,
            "$.components[1].args.factr",
            '"factr": 0.5',
            "unknown argument 'factr' for DemoAggregator (did you mean 'factor'?)",
        )
    ]


def test_without_the_plugin_its_name_is_unknown(tmp_path: Path) -> None:
    plugin_names.cache_clear()
    try:
        assert "DemoAggregator" not in short_names()
        server = copy.deepcopy(SERVER)
        server["components"][1] = {"id": "aggregator", "name": "DemoAggregator"}
        job = make_job(tmp_path / "job", server=server)
        report = flruntime.validate_job(job)
        assert [p.message for p in report.problems] == ["unknown component name 'DemoAggregator'"]
    finally:
        plugin_names.cache_clear()


# ---------------------------------------------------------------- a job's custom/ folder

NET_A = "class Net:\n    KIND = 'a'\n\n    def __init__(self, width: int = 1) -> None:\n        self.width = width\n"
NET_B = "class Net:\n    KIND = 'b'\n\n    def __init__(self, depth: int = 1) -> None:\n        self.depth = depth\n"


def _net_job(root: Path, net: str, args: dict[str, Any]) -> Path:
    server = copy.deepcopy(SERVER)
    server["components"].append({"id": "net", "path": "net.Net", "args": args})
    return make_job(root, server=server, custom={"parts.py": PARTS, "net.py": net})


def test_each_job_gets_its_own_custom_code(tmp_path: Path) -> None:
    job_a = _net_job(tmp_path / "a", NET_A, {"width": 2})
    job_b = _net_job(tmp_path / "b", NET_B, {"depth": 3})
    path_before = list(sys.path)
    graph_a = flruntime.build_job_site(job_a, "server")
    graph_b = flruntime.build_job_site(job_b, "server")
    net_a, net_b = graph_a.components["net"], graph_b.components["net"]
    assert (type(net_a).KIND, net_a.width) == ("a", 2)
    assert (type(net_b).KIND, net_b.depth) == ("b", 3)
    assert type(net_a) is not type(net_b)
    # job a's signature check is not confused by job b's module of the same name
    assert flruntime.validate_job(job_a).problems == []
    job_c = _net_job(tmp_path / "c", NET_A, {"depth": 3})
    assert formatted(job_c) == [
        at(
            job_c,
            "$.components[2].args.depth",
            '"depth": 3',
            "unknown argument 'depth' for Net (did you mean 'width'?)",
        )
    ]
    assert "net" not in sys.modules and "parts" not in sys.modules
    assert sys.path == path_before


def test_custom_code_is_importable_by_this_job_only(tmp_path: Path) -> None:
    job_a = _net_job(tmp_path / "a", NET_A, {})
    job_b = make_job(tmp_path / "b", server=server_with({"id": "net", "path": "net.Net"}), custom={"parts.py": PARTS})
    assert flruntime.validate_job(job_a).problems == []
    assert formatted(job_b) == [
        at(
            job_b,
            "$.components[2].path",
            '"path": "net.Net"',
            "class path 'net.Net' is outside the import allowlist (allow it with --allow net. "
            "(or FLRUNTIME_ALLOW=net.), or put the code in the app's custom/ folder)",
        )
    ]


def test_a_module_of_the_same_name_is_hidden_and_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = types.ModuleType("net")
    monkeypatch.setitem(sys.modules, "net", other)
    job = _net_job(tmp_path / "a", NET_A, {"width": 5})
    graph = flruntime.build_job_site(job, "server")
    assert type(graph.components["net"]).KIND == "a"
    assert sys.modules["net"] is other


def test_validation_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    job = make_job(
        tmp_path / "job",
        server=server_with({"id": "net", "path": "pkg.net.Net"}),
        custom={"parts.py": PARTS, "pkg/__init__.py": "", "pkg/net.py": NET_A},
    )
    path_before = list(sys.path)
    assert flruntime.validate_job(job).problems == []
    flruntime.build_job_site(job, "server")
    flruntime.build_job_site(job, "site-1")
    assert sys.path == path_before
    assert not {"parts", "pkg", "pkg.net"} & set(sys.modules)
    assert sorted(p.name for p in job.rglob("__pycache__")) == []
    assert sys.dont_write_bytecode is False


def test_client_app_custom_code(tmp_path: Path) -> None:
    client = copy.deepcopy(CLIENT)
    client["executors"][0]["executor"] = {"path": "parts.Trainr"}
    job = make_job(tmp_path / "job", client=client)
    report = flruntime.validate_job(job)
    assert [p.format() for p in report.problems] == [
        f"app/config/config_fed_client.json:{line_of(job / 'app/config/config_fed_client.json', 'parts.Trainr')}: "
        "$.executors[0].executor.path: module 'parts' has no class 'Trainr' (did you mean 'Trainer'?)"
    ]


@pytest.mark.parametrize(
    ("files", "module"),
    [
        pytest.param({"models/__init__.py": "", "models/net.py": NET_A}, "models.net", id="regular-package"),
        pytest.param({"models/net.py": NET_A}, "models.net", id="namespace-package"),
        pytest.param({"models/sub/net.py": NET_A}, "models.sub.net", id="nested-namespace-package"),
    ],
)
def test_packages_in_custom(tmp_path: Path, files: dict[str, str], module: str) -> None:
    job = make_job(
        tmp_path / "job",
        server=server_with({"id": "net", "path": f"{module}.Net", "args": {"width": 2}}),
        custom={"parts.py": PARTS, **files},
    )
    assert formatted(job) == []
    graph = flruntime.build_job_site(job, "server")
    assert (type(graph.components["net"]).KIND, graph.components["net"].width) == ("a", 2)
    assert not [m for m in sys.modules if m == "models" or m.startswith("models.")]


def test_a_data_folder_in_custom_hides_no_module(tmp_path: Path) -> None:
    import json

    job = make_job(tmp_path / "job", custom={"parts.py": PARTS, "json/notes.txt": "not python\n"})
    assert formatted(job) == []
    flruntime.build_job_site(job, "server")
    assert sys.modules["json"] is json
