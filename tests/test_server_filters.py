import json

import numpy as np
from simkit import sim_job

from flruntime.runtime.simulator import simulate

FILTERS = '''
import numpy as np

from flruntime.roles import Executor, Filter
from flruntime.runtime.messages import ModelMessage, ParamsType


class Affine(Filter):
    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        self.scale, self.shift = scale, shift

    def process(self, data, ctx):
        params = {k: v * self.scale + self.shift for k, v in (data.params or {}).items()}
        return ModelMessage(params, data.params_type, data.metrics, dict(data.meta), data.current_round)


class Boom(Filter):
    def process(self, data, ctx):
        raise RuntimeError(f"boom on {ctx.task_name}")


class Echo(Executor):
    """Returns what it received as the weight difference."""

    def execute(self, task, data, ctx):
        return ModelMessage({k: np.array(v) for k, v in data.params.items()}, ParamsType.DIFF)
'''


def filtered_job(root, data_filters, result_filters):
    job = sim_job(root, num_rounds=1, min_clients=2)
    (job / "app/custom/filters.py").write_text(FILTERS)
    server_path = job / "app/config/config_fed_server.json"
    server = json.loads(server_path.read_text())
    server["task_data_filters"] = data_filters
    server["task_result_filters"] = result_filters
    server_path.write_text(json.dumps(server))
    client_path = job / "app/config/config_fed_client.json"
    client = json.loads(client_path.read_text())
    client["executors"][0]["executor"] = {"path": "filters.Echo"}
    client_path.write_text(json.dumps(client))
    return job


def test_server_data_filter_changes_what_clients_receive(tmp_path):
    chain = [{"tasks": ["train"], "filters": [{"path": "filters.Affine", "args": {"shift": 1.0}}]}]
    job = filtered_job(tmp_path / "job", chain, [])
    assert simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None).ok
    # clients receive 0 + 1 and echo it back as the difference: the global model becomes 0 + 1
    np.testing.assert_allclose(np.load(tmp_path / "ws/server/global.npy"), 1.0)


def test_server_result_filters_run_in_config_order(tmp_path):
    chain = [
        {
            "tasks": ["train"],
            "filters": [
                {"path": "filters.Affine", "args": {"shift": 3.0}},
                {"path": "filters.Affine", "args": {"scale": 2.0}},
            ],
        }
    ]
    job = filtered_job(tmp_path / "job", [], chain)
    assert simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None).ok
    # each echoed 0 becomes (0 + 3) * 2 = 6 on arrival
    np.testing.assert_allclose(np.load(tmp_path / "ws/server/global.npy"), 6.0)


def test_a_failing_result_filter_fails_that_result_only(tmp_path):
    chain = [{"tasks": ["train"], "filters": [{"path": "filters.Boom"}]}]
    job = filtered_job(tmp_path / "job", [], chain)
    result = simulate(job, n_clients=2, workspace=tmp_path / "ws", progress=None)
    assert not result.ok
    log = (tmp_path / "ws/server/log.txt").read_text()
    assert "result filter failed on the result of 'train' from site-1" in log
    assert "TASK_RESULT_FILTER_ERROR RuntimeError: boom on train" in log
