import json
import os
import stat
import threading

import numpy as np
import pytest
import torch

import flruntime.client as flare
from flruntime.client import binding
from flruntime.client.base import Incoming
from flruntime.client.config import ClientConfig, config_path, read_config_file, update_config_file
from flruntime.client.ex_process import ExProcessClientAPI
from flruntime.client.in_process import InProcessChannel, InProcessClientAPI
from flruntime.client.protocol import Topic
from flruntime.pipes import FilePipe, PipeEndpoint
from flruntime.runtime.messages import ModelMessage, ParamsType, Task, TaskResult
from flruntime.transport.codec import decode, encode

NVFLARE_NAMES = {
    "init", "receive", "send", "is_running", "get_site_name", "get_job_id", "get_task_name", "is_train",
    "is_evaluate", "is_submit_model", "system_info", "get_config", "clear", "shutdown", "FLModel", "ParamsType",
}  # fmt: skip


def test_names_match_nvflare_client_api():
    assert NVFLARE_NAMES <= set(flare.__all__)
    assert flare.FLModel is ModelMessage and flare.ParamsType is ParamsType
    model = flare.FLModel(params={"w": np.ones(2)}, metrics={"acc": 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 3})
    assert model.params_type == flare.ParamsType.FULL


def params():
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, dtype=np.float32)}


class Harness:
    """An executor side for one in-process session, with the script running ``body`` in a bound thread."""

    def __init__(self, body, **config):
        self.channel = InProcessChannel()
        self.api = InProcessClientAPI(ClientConfig(site_name="site-7", job_id="j1", **config), self.channel)
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(body,), name="site-7:script", daemon=True)
        self.thread.start()

    def _run(self, body):
        binding.bind_thread(self.api)
        try:
            body()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            binding.unbind_thread(self.api)

    def task(self, task_id, model, name="train"):
        self.channel.post(Incoming(task_id, name, model))
        result = self.channel.wait_result(task_id, 10)
        assert result is not None, f"no result (script error: {self.error!r})"
        return result

    def finish(self):
        self.channel.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def add_one_loop(log=None):
    flare.init()
    while flare.is_running():
        model = flare.receive()
        assert flare.receive() is model  # cached until sent
        if log is not None:
            log.append((flare.get_task_name(), flare.is_train(), flare.is_evaluate(), flare.is_submit_model()))
        new = {k: v + 1 for k, v in model.params.items()}
        flare.send(flare.FLModel(params=new, metrics={"loss": 0.5}, meta={"NUM_STEPS_CURRENT_ROUND": 4}))


def test_full_params_pass_through_as_numpy():
    seen = []
    h = Harness(lambda: add_one_loop(seen))
    result = h.task("t1", ModelMessage(params(), current_round=3, total_rounds=5))
    h.finish()
    assert result.params_type is ParamsType.FULL
    np.testing.assert_array_equal(result.params["w"], params()["w"] + 1)
    assert result.meta["NUM_STEPS_CURRENT_ROUND"] == 4 and result.metrics == {"loss": 0.5}
    assert (result.current_round, result.total_rounds) == (3, 5)
    assert seen == [("train", True, False, False)]


def test_diff_is_computed_when_the_script_sends_full_params():
    h = Harness(add_one_loop, transfer_type=ParamsType.DIFF)
    result = h.task("t1", ModelMessage(params()))
    h.finish()
    assert result.params_type is ParamsType.DIFF
    np.testing.assert_array_equal(result.params["w"], np.ones((2, 3), dtype=np.float32))
    assert result.params["w"].dtype == np.float32


def test_diff_survives_in_place_changes_by_the_script():
    def body():
        model = flare.receive()
        model.params["w"] += 10  # in place: the API kept its own copy of what it handed out
        flare.send(flare.FLModel(params=model.params))

    h = Harness(body, transfer_type=ParamsType.DIFF)
    result = h.task("t1", ModelMessage(params()))
    h.finish()
    np.testing.assert_array_equal(result.params["w"], np.full((2, 3), 10, dtype=np.float32))
    np.testing.assert_array_equal(result.params["b"], np.zeros(2, dtype=np.float32))


def test_diff_sent_by_the_script_is_kept():
    def body():
        flare.receive()
        flare.send(flare.FLModel(params={"w": np.full((2, 3), 0.5)}, params_type="DIFF"))

    h = Harness(body, transfer_type=ParamsType.DIFF)
    result = h.task("t1", ModelMessage(params()))
    h.finish()
    assert result.params_type is ParamsType.DIFF
    np.testing.assert_array_equal(result.params["w"], np.full((2, 3), 0.5))


def test_diff_of_a_parameter_never_received_is_an_error():
    def body():
        flare.receive()
        flare.send(flare.FLModel(params={"new": np.ones(1)}))

    h = Harness(body, transfer_type=ParamsType.DIFF)
    h.channel.post(Incoming("t1", "train", ModelMessage(params())))
    with pytest.raises(ValueError, match="cannot send a DIFF: parameter 'new' was not in the model received"):
        h.finish()


def test_pytorch_format_hands_tensors_and_takes_tensors_back():
    def body():
        net = torch.nn.Linear(3, 2)
        while flare.is_running():
            model = flare.receive()
            assert all(isinstance(v, torch.Tensor) for v in model.params.values())
            net.load_state_dict({"weight": model.params["w"], "bias": model.params["b"]})
            with torch.no_grad():
                net.weight.mul_(2)
            sd = net.state_dict()
            flare.send(flare.FLModel(params={"w": sd["weight"], "b": sd["bias"]}, metrics={"acc": torch.tensor(0.75)}))

    h = Harness(body, exchange_format="pytorch", transfer_type=ParamsType.DIFF)
    result = h.task("t1", ModelMessage(params()))
    h.finish()
    assert all(isinstance(v, np.ndarray) for v in result.params.values())
    np.testing.assert_allclose(result.params["w"], params()["w"])  # 2w - w
    np.testing.assert_allclose(result.params["b"], np.zeros(2))
    assert result.metrics == {"acc": 0.75}
    assert encode(result)  # plain numbers and numpy only: it crosses the wire


def test_send_without_a_task_is_an_error():
    def body():
        flare.send(flare.FLModel(params={}))

    h = Harness(body)
    with pytest.raises(RuntimeError, match=r"flare.send\(\) needs a task: call flare.receive\(\) first"):
        h.finish()


def test_receive_returns_none_once_the_job_ended_and_on_abort():
    ended = []

    def body():
        ended.append((flare.receive(), flare.is_running(), flare.receive(timeout=0.01)))

    h = Harness(body)
    h.finish()
    assert ended == [(None, False, None)]

    abort = threading.Event()
    channel = InProcessChannel(abort=abort)
    api = InProcessClientAPI(ClientConfig(), channel)
    got = []
    t = threading.Thread(target=lambda: got.append(api.receive()), daemon=True)
    t.start()
    abort.set()
    t.join(10)
    assert got == [None] and not t.is_alive()


def test_receive_with_timeout_returns_none_while_the_job_runs():
    api = InProcessClientAPI(ClientConfig(), InProcessChannel())
    assert api.receive(timeout=0.01) is None
    assert not api._ended


def test_each_thread_talks_to_its_own_session_and_child_threads_inherit():
    names = {}

    def body():
        site = flare.get_site_name()
        child = []
        t = threading.Thread(target=lambda: child.append(flare.get_site_name()))
        t.start()
        t.join()
        names[threading.current_thread().name] = (site, child[0], flare.get_job_id(), flare.system_info())

    sessions = [InProcessClientAPI(ClientConfig(site_name=f"site-{i}", job_id="j"), InProcessChannel()) for i in (1, 2)]

    def run(api):
        binding.bind_thread(api)
        try:
            body()
        finally:
            binding.unbind_thread(api)

    threads = [threading.Thread(target=run, args=(api,), name=f"t{i}") for i, api in enumerate(sessions, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert names == {
        "t1": ("site-1", "site-1", "j", {"job_id": "j", "site_name": "site-1"}),
        "t2": ("site-2", "site-2", "j", {"job_id": "j", "site_name": "site-2"}),
    }


def test_a_foreign_thread_is_refused_when_several_sessions_run():
    apis = [InProcessClientAPI(ClientConfig(site_name=s), InProcessChannel()) for s in ("a", "b")]
    stop = threading.Event()

    def hold(api):
        binding.bind_thread(api)
        stop.wait(10)
        binding.unbind_thread(api)

    threads = [threading.Thread(target=hold, args=(a,)) for a in apis]
    for t in threads:
        t.start()
    try:
        with pytest.raises(RuntimeError, match="belongs to no training script while several sites run"):
            flare.get_site_name()
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_outside_a_job_the_api_says_so(monkeypatch):
    for name in ("FLRUNTIME_CLIENT_API", "CLIENT_API_TYPE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="not running under an flruntime job"):
        flare.init()


def test_launched_script_without_config_gets_a_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIENT_API_TYPE", "EX_PROCESS_API")
    monkeypatch.setenv("FLRUNTIME_CLIENT_CONFIG", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="no Client API config at .*missing.json"):
        flare.init()


# --- the config file -----------------------------------------------------------------------------------


def test_config_file_round_trip_keeps_other_sections(tmp_path):
    path = config_path(tmp_path, "client_api_config.json")
    assert path == tmp_path / "config" / "client_api_config.json"
    update_config_file(path, {"METRICS_EXCHANGE": {"pipe_channel_name": "metric"}})
    cfg = ClientConfig(site_name="s", job_id="j", exchange_format="pytorch", transfer_type=ParamsType.DIFF)
    cfg.pipe = {"CLASS_NAME": "FilePipe", "ARG": {"mode": "ACTIVE", "root_path": "/x"}}
    update_config_file(path, cfg.to_dict())
    data = json.loads(path.read_text())
    assert data["METRICS_EXCHANGE"] == {"pipe_channel_name": "metric"}
    assert data["TASK_EXCHANGE"]["exchange_format"] == "pytorch" and data["TASK_EXCHANGE"]["transfer_type"] == "DIFF"
    assert data["site_name"] == "s" and data["job_id"] == "j"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    back = read_config_file(path)
    assert (
        back.pipe == cfg.pipe
        and back.transfer_type is ParamsType.DIFF
        and back.extra == {"METRICS_EXCHANGE": {"pipe_channel_name": "metric"}}
    )


def test_config_values_are_checked(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"TASK_EXCHANGE": {"transfer_type": "HALF"}}))
    with pytest.raises(ValueError, match="params_transfer_type must be FULL or DIFF, got 'HALF'"):
        read_config_file(path)


# --- the launched-script session, over a real file pipe, in one process -------------------------------


def test_ex_process_session_over_a_file_pipe(tmp_path):
    client_side = FilePipe("PASSIVE", str(tmp_path / "pipe"), file_check_interval=0.01)
    client_side.open("task")
    endpoint = PipeEndpoint(client_side, read_interval=0.01, heartbeat_interval=0.05)
    endpoint.start()
    cfg = ClientConfig(site_name="site-1", job_id="j", transfer_type=ParamsType.DIFF, read_interval=0.01)
    cfg.pipe = client_side.export()
    update_config_file(tmp_path / "cfg.json", cfg.to_dict())
    api = ExProcessClientAPI.from_file(tmp_path / "cfg.json")
    outcome = []

    def script():
        api.init()
        while api.is_running():
            model = api.receive()
            api.send(ModelMessage({k: v * 3 for k, v in model.params.items()}, meta={"NUM_STEPS_CURRENT_ROUND": 2}))
        outcome.append("ended")
        api.shutdown()

    t = threading.Thread(target=script, daemon=True)
    t.start()
    try:
        assert endpoint.get(10)[0] == Topic.HELLO
        endpoint.send(Topic.TASK, encode(Task("t1", "train", ModelMessage(params(), current_round=0))))
        topics = {}
        while Topic.RESULT not in topics:
            message = endpoint.get(10)
            assert message is not None
            topics[message[0]] = message[1]
        assert topics[Topic.GOT] == b"t1"
        result = decode(topics[Topic.RESULT])
        assert isinstance(result, TaskResult) and result.site == "site-1" and result.task_id == "t1"
        assert result.data.params_type is ParamsType.DIFF
        np.testing.assert_array_equal(result.data.params["w"], 2 * params()["w"])
        assert result.data.current_round == 0
        endpoint.send(Topic.ACK, b"t1")
        endpoint.send(Topic.STOP)
        t.join(10)
        assert outcome == ["ended"] and not t.is_alive()
        assert endpoint.get(10) == (Topic.BYE, b"")
    finally:
        endpoint.close()
        client_side.close()


def test_ex_process_session_ends_when_the_client_goes_silent(tmp_path):
    client_side = FilePipe("PASSIVE", str(tmp_path / "pipe"), file_check_interval=0.01)
    client_side.open("task")
    cfg = ClientConfig(heartbeat_timeout=0.2, read_interval=0.01, heartbeat_interval=0.05)
    cfg.pipe = client_side.export()
    api = ExProcessClientAPI(cfg)
    try:
        assert api.receive() is None  # nobody sends heartbeats: the session ends by itself
        assert not api.is_running()
    finally:
        api.shutdown()
        client_side.close()


def test_metrics_only_results_for_evaluation_tasks():
    def body():
        while flare.is_running():
            flare.receive()
            assert flare.is_evaluate() and not flare.is_train()
            flare.send(flare.FLModel(metrics={"accuracy": np.float32(0.25)}))

    h = Harness(body, transfer_type=ParamsType.DIFF)
    result = h.task("v1", ModelMessage(params()), name="validate")
    h.finish()
    assert result.params is None and result.metrics == {"accuracy": 0.25}
    assert type(result.metrics["accuracy"]) is float


def test_send_needs_an_fl_model():
    def body():
        flare.receive()
        flare.send({"w": np.ones(1)})

    h = Harness(body)
    h.channel.post(Incoming("t1", "train", ModelMessage(params())))
    with pytest.raises(TypeError, match="flare.send\\(\\) expects an FLModel, got dict"):
        h.finish()
