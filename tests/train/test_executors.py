"""Executors: serial, local worker processes and Ray give identical models; dependencies, retries and failures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
import multiprocessing
import os
import signal
import threading
import time

import pandas as pd
import pytest

from studylib.params import ExecutorParams
from studylib.train.executors import JobFailed, LocalExecutor, SerialExecutor, job_dependencies, make_executor
from studylib.train.experiments import Experiment, plan_autism, plan_sex
from tests.support import make_store, small_params

pytestmark = pytest.mark.slow


def _experiment(tmp_path, root: str, executor: ExecutorParams, **transfer) -> Experiment:
    stores = {"hcp": make_store(tmp_path / "stores", "hcp", ["thickness"], n=16, seed=1),
              "abide": make_store(tmp_path / "stores", "abide", ["thickness"], n=16, sites=2, seed=2)}
    params = small_params(autism_cohorts=["abide"], autism_arms=["scratch", "2-stage"], site_out_arms=[],
                          **transfer)
    train = params.train.model_copy(update={"epochs": 2, "mixup_epochs": 1, "threads": 1,
                                            "backbones": ["efficientnet_lite0"]})
    experiment = Experiment(tmp_path / root, stores, train, params.seed, "cpu", executor=executor)
    plan_autism(experiment, params.transfer, ["abide"])
    return experiment


def _started_after_dependencies(experiment: Experiment) -> None:
    tasks = experiment.tasks()
    for index, needs in enumerate(job_dependencies(tasks)):
        started = (tasks[index].folder / "job.json").stat().st_mtime_ns
        for need in needs:
            assert (tasks[need].folder / "done.json").stat().st_mtime_ns <= started, tasks[index].job.name


def test_serial_local_and_ray_train_identical_models_in_dependency_order(tmp_path):
    runs = {}
    for kind in ("serial", "local", "ray"):
        experiment = _experiment(tmp_path, kind, ExecutorParams(kind=kind, workers=2))
        assert experiment.run(progress=False) == len(experiment.jobs) == 1 + 2 * 2  # a stage-1 model, 2 arms x 2 folds
        assert experiment.executor.describe()["executor"] == kind
        if kind == "ray":
            assert experiment.executor.describe()["nodes"] == 1  # the local instance: one node
            assert experiment.run_summary(5) == "trained 5, reused 0; the jobs ran on 1 Ray node(s)"
        else:
            assert experiment.run_summary(5) == "trained 5, reused 0"
        _started_after_dependencies(experiment)
        runs[kind] = experiment.predictions()
        assert experiment.run(progress=False) == 0  # finished jobs are never trained again
    needs = job_dependencies(experiment.tasks())
    assert [len(n) for n in needs] == [0, 0, 0, 1, 1]  # the 2-stage models wait for the stage-1 model
    for kind in ("local", "ray"):
        pd.testing.assert_frame_equal(runs["serial"], runs[kind], check_exact=True)


def test_ray_joins_a_running_cluster_and_spreads_jobs_over_its_nodes(tmp_path):
    """``address`` joins a cluster someone already runs: here two Ray nodes of one CPU each on this machine
    (``ray.cluster_utils.Cluster``, what ``ray start --head`` and ``ray start --address`` make), so the two jobs that
    can run at once run on both nodes; the models equal the serial run's, stage order included."""
    import ray
    from ray.cluster_utils import Cluster

    serial = _experiment(tmp_path, "serial", ExecutorParams())
    serial.run(progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        experiment = _experiment(tmp_path, "cluster", ExecutorParams(kind="ray", workers=2, address=cluster.address))
        assert experiment.run(progress=False) == len(experiment.jobs)
        assert not ray.is_initialized()  # the run disconnected; the cluster stays up for its owner
        described = experiment.executor.describe()
        assert described["address"] == cluster.address and described["nodes"] == 2
        assert experiment.run_summary(len(experiment.jobs)).endswith("; the jobs ran on 2 Ray node(s)")
        assert sum(experiment.executor.nodes.values()) == len(experiment.jobs)
        _started_after_dependencies(experiment)
        pd.testing.assert_frame_equal(serial.predictions(), experiment.predictions(), check_exact=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_ray_refuses_a_cluster_address_where_nothing_answers(tmp_path):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = make_executor(ExecutorParams(kind="ray", address=f"127.0.0.1:{port}"), 1, "cpu")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"executor.address '127.0.0.1:{port}': nothing answers there"):
        executor.run([_Square(2, tmp_path)], lambda index, result: None, work=_square, cpus=1)
    assert time.monotonic() - started < 30  # ray.init itself would wait on it for over 10 minutes
    with pytest.raises(ValueError, match="expected 'auto', 'host:port'"):
        make_executor(ExecutorParams(kind="ray", address="head-node"), 1, "cpu").run(
            [_Square(2, tmp_path)], lambda index, result: None, work=_square, cpus=1)


def test_ray_says_what_to_check_when_it_cannot_join_a_cluster(tmp_path):
    if os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists():
        pytest.skip("a Ray cluster runs on this machine: address 'auto' would join it")
    executor = make_executor(ExecutorParams(kind="ray", address="auto"), 1, "cpu")
    with pytest.raises(RuntimeError, match="executor.address 'auto': could not join a Ray cluster there") as caught:
        executor.run([_Square(2, tmp_path)], lambda index, result: None, work=_square, cpus=1)
    assert "RAY_AUTH_MODE=token" in str(caught.value)  # what a cluster of Ray 2.59 or later asks of whoever joins


def test_a_killed_worker_is_retried_and_the_job_ends_identical(tmp_path):
    serial = _experiment(tmp_path, "serial", ExecutorParams())
    serial.run(progress=False)
    local = _experiment(tmp_path, "local", ExecutorParams(kind="local", workers=2, retries=1))
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(trained=local.run(progress=False)))
    runner.start()
    deadline = time.monotonic() + 300
    while not list((tmp_path / "local").rglob("checkpoint.pt")):  # a job is half-way through
        assert runner.is_alive() and time.monotonic() < deadline, "the run ended before a worker could be killed"
        time.sleep(0.01)
    killed = [child.pid for child in multiprocessing.active_children()]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    runner.join()
    assert killed and outcome["trained"] == len(local.jobs)
    pd.testing.assert_frame_equal(serial.predictions(), local.predictions(), check_exact=True)


@pytest.mark.parametrize("kind", ["serial", "local"])
def test_a_job_that_keeps_failing_stops_the_run_naming_it(tmp_path, kind):
    store = make_store(tmp_path / "stores", "hcp", ["thickness"], n=12)
    meta = json.loads((store.path / "store.json").read_text())
    meta["hemispheres"] = ["left", "right"]  # the right hemisphere's images are missing
    (store.path / "store.json").write_text(json.dumps(meta))
    params = small_params(sex_arms=["scratch"])
    train = params.train.model_copy(update={"epochs": 1, "mixup_epochs": 1, "threads": 1})
    experiment = Experiment(tmp_path / "run", {"hcp": store}, train, params.seed, "cpu",
                            executor=ExecutorParams(kind=kind, workers=1, retries=1))
    plan_sex(experiment, params.transfer)
    with pytest.raises(JobFailed) as caught:
        experiment.run(progress=False)
    message = str(caught.value)
    assert "job hcp/kfold/scratch/resnet18/right_thickness/fold00 failed 2 time(s) (retries: 1)" in message
    assert "KeyError" in message and "no right thickness images" in message


def test_executors_describe_themselves():
    assert SerialExecutor().describe() == {"executor": "serial", "workers": 1}
    assert LocalExecutor(3).describe() == {"executor": "local", "workers": 3, "gpus": []}
    assert LocalExecutor(3, gpus=[0, 1]).describe()["workers"] == 2  # one worker per GPU


@dataclass(frozen=True)
class _Square:
    """A task that is not a training job: a name, a folder and a value."""

    value: int
    folder: Path

    @property
    def name(self) -> str:
        return f"square {self.value}"


def _square(task: _Square) -> int:
    if task.value < 0:
        raise ValueError(f"negative {task.value}")
    return task.value**2


@pytest.mark.parametrize("kind", ["serial", "local", "ray"])
def test_executors_run_other_work_and_name_a_failing_task(tmp_path, kind):
    executor = make_executor(ExecutorParams(kind=kind, workers=2, retries=1), 1, "cpu")
    results = {}
    executor.run([_Square(value, tmp_path) for value in range(5)], results.__setitem__, work=_square, cpus=1)
    assert results == {value: value**2 for value in range(5)}
    with pytest.raises(JobFailed, match="square -3 failed 2 time") as failure:
        executor.run([_Square(-3, tmp_path)], results.__setitem__, work=_square, cpus=1)
    assert "negative -3" in str(failure.value)
