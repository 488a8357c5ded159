"""Helpers for tests: write real job folders into ``tmp_path``.

A job built by :func:`make_job` is valid unless a test changes it: a server app with a FedAvg-like
workflow, a persistor, an aggregator and a model, and a client app with a trainer, all defined in
the job's own ``app/custom/parts.py`` (written by the test, so nothing is mocked).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

#: The custom module every default job ships as ``app/custom/parts.py``.
PARTS = textwrap.dedent(
    '''
    """Small components for tests; every constructor records itself in ORDER."""

    from collections.abc import Mapping
    from typing import Annotated, Any

    from flruntime import Ref
    from flruntime.roles import Aggregator, Executor, Filter, ModelPersistor, ShareableGenerator, Workflow

    ORDER: list[str] = []


    class Net:
        def __init__(self, width: int = 4) -> None:
            ORDER.append("Net")
            self.width = width


    class Persistor(ModelPersistor):
        def __init__(self, model: Any = None, path: str = "model.npy") -> None:
            ORDER.append("Persistor")
            self.model = model
            self.path = path

        def load(self, ctx: Any) -> Any:
            return self.model

        def save(self, model: Any, ctx: Any) -> None:
            pass


    class WeightedAggregator(Aggregator):
        def __init__(self, weigh_by: str = "num_steps", exclude: list[str] | None = None) -> None:
            ORDER.append("WeightedAggregator")
            self.weigh_by = weigh_by
            self.exclude = exclude

        def accept(self, site: str, result: Any, ctx: Any) -> bool:
            return True

        def aggregate(self, ctx: Any) -> Any:
            return None

        def reset(self, ctx: Any) -> None:
            pass


    class Generator(ShareableGenerator):
        def __init__(self) -> None:
            ORDER.append("Generator")

        def to_task_data(self, global_model: Any, ctx: Any) -> Any:
            return global_model

        def update(self, global_model: Any, aggregate: Any, ctx: Any) -> Any:
            return aggregate


    class FedAvg(Workflow):
        def __init__(
            self,
            num_rounds: int = 1,
            aggregator_id: Annotated[str, Ref(Aggregator)] = "aggregator",
            persistor_id: Annotated[str, Ref(ModelPersistor)] = "persistor",
            train_task_name: str = "train",
            label: str = "",
        ) -> None:
            ORDER.append("FedAvg")
            self.num_rounds = num_rounds
            self.aggregator_id = aggregator_id
            self.persistor_id = persistor_id
            self.label = label

        @classmethod
        def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
            return {args.get("train_task_name", "train")}

        def run(self, ctx: Any) -> None:
            pass


    class Evaluate(Workflow):
        def __init__(self, model_ids: Annotated[list[str], Ref(ModelPersistor)] | None = None) -> None:
            ORDER.append("Evaluate")
            self.model_ids = model_ids

        @classmethod
        def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
            return {"validate"}

        def run(self, ctx: Any) -> None:
            pass


    class Trainer(Executor):
        def __init__(self, lr: float = 0.01, epochs: int = 1, verbose: bool = False) -> None:
            ORDER.append("Trainer")
            self.lr = lr
            self.epochs = epochs

        def execute(self, task: str, data: Any, ctx: Any) -> Any:
            return data


    class Labeler(Filter):
        def __init__(self, label: str) -> None:
            ORDER.append("Labeler:" + label)
            self.label = label

        def process(self, data: Any, ctx: Any) -> Any:
            return data


    class Exploding:
        def __init__(self, size: int = 1) -> None:
            raise ValueError(f"size {size} is too big")


    class Ensemble:
        def __init__(self, members: list[Any], by_name: dict[str, Any] | None = None) -> None:
            ORDER.append("Ensemble")
            self.members = members
            self.by_name = by_name


    class Chain:
        def __init__(self, next_id: Annotated[str, Ref()] = "") -> None:
            self.next_id = next_id
    '''
)

META: dict[str, Any] = {"name": "demo", "min_clients": 1, "deploy_map": {"app": ["@ALL"]}}

SERVER: dict[str, Any] = {
    "format_version": 2,
    "num_rounds": 3,
    "workflows": [
        {
            "id": "fedavg",
            "path": "parts.FedAvg",
            "args": {"num_rounds": "{num_rounds}", "aggregator_id": "aggregator", "persistor_id": "persistor"},
        }
    ],
    "components": [
        {"id": "persistor", "path": "parts.Persistor", "args": {"model": {"path": "parts.Net", "args": {"width": 8}}}},
        {"id": "aggregator", "path": "parts.WeightedAggregator", "args": {}},
    ],
}

CLIENT: dict[str, Any] = {
    "format_version": 2,
    "executors": [{"tasks": ["train"], "executor": {"path": "parts.Trainer", "args": {"lr": 0.1}}}],
}


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def dump(data: Any) -> str:
    """Render JSON the way people write it: two-space indent, one key per line."""
    return json.dumps(data, indent=2) + "\n"


def make_job(
    root: Path,
    *,
    meta: Any = META,
    server: Any = SERVER,
    client: Any = CLIENT,
    custom: dict[str, str] | None = None,
    app: str = "app",
) -> Path:
    """Write a job folder; dict values are written as JSON, str values as-is, None leaves the file out.

    Args:
        root: the job folder to create.
        meta: ``meta.json``.
        server: ``app/config/config_fed_server.json``.
        client: ``app/config/config_fed_client.json``.
        custom: files of ``app/custom/`` (default: ``parts.py``).
        app: the app folder's name.
    """
    for rel, doc in (
        ("meta.json", meta),
        (f"{app}/config/config_fed_server.json", server),
        (f"{app}/config/config_fed_client.json", client),
    ):
        if doc is not None:
            write(root / rel, doc if isinstance(doc, str) else dump(doc))
    for name, text in ({"parts.py": PARTS} if custom is None else custom).items():
        write(root / app / "custom" / name, text)
    return root


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """Return the 1-based line of the ``nth`` occurrence of ``needle`` in ``path`` (an oracle independent of
    the scanner under test)."""
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        seen += line.count(needle)
        if seen >= nth:
            return number
    raise AssertionError(f"{needle!r} (occurrence {nth}) not in {path}")


SERVER_FILE = "app/config/config_fed_server.json"
CLIENT_FILE = "app/config/config_fed_client.json"


def report_lines(root: Path, **kwargs: Any) -> list[str]:
    """Validate the job folder ``root`` and return every problem in its one-line form.

    ``kwargs`` go to :func:`flruntime.validate_job` (``site``, ``overrides``, ...).
    """
    from flruntime import validate_job

    return [p.format() for p in validate_job(root, **kwargs).problems]


def yaml_dump(data: Any) -> str:
    """Render YAML in block style, keys in the order given."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
