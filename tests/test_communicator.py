"""The communicator: tasks out, results in, duplicates and late results dropped."""

import threading

import numpy as np

from flruntime.runtime.communicator import SHUTDOWN, Communicator, LateResult
from flruntime.runtime.messages import ModelMessage, Task, TaskResult


class Broadcast:
    """Runs broadcast_and_wait in a thread; the test plays the clients."""

    def __init__(self, comm: Communicator, **kwargs):
        self.results: dict[str, TaskResult] | None = None
        self.seen: list[str] = []
        kwargs.setdefault("on_result", lambda r: self.seen.append(r.site))
        self.thread = threading.Thread(target=self._run, args=(comm, kwargs))
        self.thread.start()

    def _run(self, comm, kwargs):
        self.results = comm.broadcast_and_wait("train", ModelMessage({"w": np.zeros(2)}), **kwargs)

    def join(self):
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.results


def pull(comm: Communicator, site: str) -> Task:
    task = comm.pull(site, timeout=30)
    assert isinstance(task, Task)
    return task


def reply(task: Task, site: str) -> TaskResult:
    return TaskResult(task.task_id, task.name, site, data=ModelMessage({"w": np.ones(2)}))


def test_a_second_result_for_the_same_task_is_dropped():
    comm = Communicator(["site-1", "site-2"])
    run = Broadcast(comm)
    t1, t2 = pull(comm, "site-1"), pull(comm, "site-2")
    assert t1.headers == {} and t1.name == "train" and t1.task_id != t2.task_id
    assert comm.submit(reply(t1, "site-1")) is True
    assert comm.submit(reply(t1, "site-1")) is False
    assert comm.submit(reply(t1, "site-2")) is False  # site-2 answering site-1's task
    assert comm.late == [LateResult("site-1", "train", "duplicate"), LateResult("site-2", "train", "duplicate")]
    assert comm.submit(reply(t2, "site-2")) is True
    results = run.join()
    assert sorted(results) == ["site-1", "site-2"] and run.seen == ["site-1", "site-2"]


def test_results_after_the_task_closed_are_late_and_unknown_tasks_are_refused():
    comm = Communicator(["site-1", "site-2"])
    run = Broadcast(comm, min_responses=1, wait_time_after_min_received=0)
    t1, t2 = pull(comm, "site-1"), pull(comm, "site-2")
    assert comm.submit(reply(t1, "site-1")) is True
    assert sorted(run.join()) == ["site-1"]
    assert comm.submit(reply(t2, "site-2")) is False
    assert comm.submit(TaskResult("no-such-id", "train", "site-2")) is False
    assert comm.late == [
        LateResult("site-2", "train", "its task was already closed"),
        LateResult("site-2", "train", "unknown task"),
    ]
    assert run.seen == ["site-1"]


def test_tasks_nobody_picked_up_are_withdrawn_when_the_wait_ends():
    comm = Communicator(["site-1", "site-2"])
    run = Broadcast(comm, min_responses=1, wait_time_after_min_received=0)
    t1 = pull(comm, "site-1")
    comm.submit(reply(t1, "site-1"))
    run.join()
    assert comm.pull("site-2", timeout=0) is None  # its task was withdrawn, not left standing


def test_data_per_target_and_headers():
    comm = Communicator(["a", "b"])
    out = {}

    def go():
        out["r"] = comm.broadcast_and_wait(
            "validate", lambda site: ModelMessage(meta={"for": site}), headers={"_model_owner_": "x"}
        )

    thread = threading.Thread(target=go)
    thread.start()
    ta, tb = pull(comm, "a"), pull(comm, "b")
    assert ta.data.meta == {"for": "a"} and tb.data.meta == {"for": "b"}
    assert ta.headers == {"_model_owner_": "x"}
    comm.submit(TaskResult(ta.task_id, "validate", "a"))
    comm.submit(TaskResult(tb.task_id, "validate", "b"))
    thread.join(timeout=30)
    assert sorted(out["r"]) == ["a", "b"]


def test_a_failing_result_callback_does_not_lose_the_result():
    comm = Communicator(["a"])

    def boom(result):
        raise RuntimeError("callback fails")

    run = Broadcast(comm, on_result=boom)
    t = pull(comm, "a")
    assert comm.submit(reply(t, "a")) is True
    assert sorted(run.join()) == ["a"]


def test_abort_ends_the_wait_and_shutdown_ends_the_clients():
    comm = Communicator(["a"])
    abort = threading.Event()
    run = Broadcast(comm, abort=abort)
    t = pull(comm, "a")
    abort.set()
    assert run.join() == {}
    assert comm.submit(reply(t, "a")) is False
    comm.shutdown()
    assert comm.pull("a", timeout=30) is SHUTDOWN


def test_timeout_ends_the_wait_and_withdraws_the_tasks():
    comm = Communicator(["a"])
    assert Broadcast(comm, timeout=0.01).join() == {}
    assert comm.pull("a", timeout=0) is None


def test_concurrent_broadcasts_are_independent():
    comm = Communicator(["a"])
    first = Broadcast(comm)
    t1 = pull(comm, "a")
    second = Broadcast(comm)
    t2 = pull(comm, "a")
    comm.submit(reply(t2, "a"))
    assert sorted(second.join()) == ["a"]
    assert first.thread.is_alive()
    comm.submit(reply(t1, "a"))
    assert sorted(first.join()) == ["a"]


def test_a_client_that_went_away_is_not_waited_for_and_takes_part_again_after_it_registers():
    comm = Communicator(["a", "b", "c"])
    b = Broadcast(comm, min_responses=2)
    for site in ("a", "b"):
        task = pull(comm, site)
        assert comm.submit(reply(task, site))
    pull(comm, "c")  # c took its task and died with it
    comm.remove("c")
    assert sorted(b.join()) == ["a", "b"]
    assert comm.clients() == ["a", "b"]
    assert comm.pull("c", timeout=0.1) is None  # it must register again first

    gone = Broadcast(comm, targets=["a", "b", "c"])  # the workflow still names c: it is not waited for
    for site in ("a", "b"):
        assert comm.submit(reply(pull(comm, site), site))
    assert sorted(gone.join()) == ["a", "b"]

    comm.register("c")
    back = Broadcast(comm, targets=["a", "b", "c"])
    for site in ("a", "b", "c"):
        assert comm.submit(reply(pull(comm, site), site))
    assert sorted(back.join()) == ["a", "b", "c"]


def test_results_handed_to_a_callback_are_not_kept():
    comm = Communicator(["a"])
    got = []
    b = Broadcast(comm, on_result=got.append)
    comm.submit(reply(pull(comm, "a"), "a"))
    results = b.join()
    assert got[0].data is not None and results["a"].data is None and results["a"].rc == got[0].rc
