"""Run many training jobs (or other tasks): one after another in this process, in worker processes on this machine,
or as Ray tasks.

A job is idempotent (:mod:`studylib.train.jobs`): its folder says whether it is finished for its key, a
half-trained job resumes from its last epoch, and every file appears whole or not at all. So an executor only
has to run each job once its dependencies are finished, run independent jobs side by side, and run a job again
when it failed or its worker died; a finished job is never trained twice.

- **Dependencies** come from the jobs themselves: a job that starts from another job's model (the stage-2 models
  of the 2-stage transfer start from a stage-1 model) waits for that job (:func:`job_dependencies`).
- **Results do not depend on the executor**: every job sets ``train.threads`` intra-op threads itself
  (:func:`run_task`), and CPU training is bit-reproducible for a fixed thread count, so serial, local and Ray
  runs give identical models.
- **Shared storage**: tasks carry paths, not arrays. Workers open the image stores memory-mapped and write into
  the jobs' folders, so every worker must see the same paths (one machine, or a shared file system on a
  cluster); nothing large goes through Ray's object store.
- **Faults**: a job that raises, or whose worker dies, runs again up to ``retries`` times (it resumes from its
  checkpoint); then the run stops with :class:`JobFailed` naming the job and the tail of its traceback.
- **Other work**: ``run(tasks, on_done, work=...)`` runs any picklable tasks that have a ``name`` and a ``folder``
  through a module-level function (per-subject flat maps do, one CPU each; so does 08's occlusion, one image set
  each, on the run's GPU when it has one); they have no dependencies.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..images import ImageStore
from ..params import ExecutorParams, TrainParams
from .engine import available_cpus
from .jobs import Job, run_job

__all__ = ["Executor", "JobFailed", "JobTask", "LocalExecutor", "RayExecutor", "SerialExecutor", "job_dependencies",
           "make_executor", "run_task", "run_work"]

#: Called with a task's index and what its work returned (for training jobs: the epochs trained, 0 when already
#: finished).
OnDone = Callable[[int, Any], None]


@dataclass(frozen=True, eq=False)
class JobTask:
    """Everything a worker needs to run one job: small and picklable (paths, not arrays)."""

    job: Job
    store: Path
    folds: np.ndarray
    train: TrainParams
    folder: Path
    device: str

    @property
    def name(self) -> str:
        return self.job.name


class JobError(RuntimeError):
    """A job raised in a worker; carries the job's name and the tail of the traceback (picklable)."""

    def __init__(self, name: str, tail: str):
        super().__init__(name, tail)
        self.name = name
        self.tail = tail

    def __str__(self) -> str:
        return f"job {self.name} raised:\n{self.tail}"


class JobFailed(RuntimeError):
    """A job failed on every attempt; the run stops, naming it."""


def run_task(task: JobTask) -> int:
    """Run one job here with ``train.threads`` intra-op threads; return the epochs it trained (0: already done).

    Every executor calls this, in this process or in a worker; the job reads its images memory-mapped.
    """
    import torch

    try:
        torch.set_num_threads(task.train.threads)
        store = ImageStore(task.store)
        job = task.job
        epochs: list[int] = []
        run_job(job, store.images(job.hemisphere, job.metric), store.subjects, task.folds, task.train, task.folder,
                store_identity=store.identity(job.hemisphere, job.metric), device=task.device,
                after_epoch=epochs.append)
        return len(epochs)
    except Exception:
        raise JobError(task.job.name, "\n".join(traceback.format_exc().splitlines()[-20:])) from None


def run_work(work: Callable[[Any], Any], task: Any) -> Any:
    """``work(task)``, with any exception turned into a picklable :class:`JobError` naming the task."""
    try:
        return work(task)
    except JobError:
        raise
    except Exception:
        raise JobError(task.name, "\n".join(traceback.format_exc().splitlines()[-20:])) from None


def _run_on_node(work: Callable[[Any], Any], task: Any) -> tuple[Any, str]:
    """:func:`run_work` in a Ray task, with the id of the Ray node that ran it."""
    import ray

    return run_work(work, task), ray.get_runtime_context().get_node_id()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a ``host:port`` cluster address where nothing accepts a connection: ``ray.init`` would wait on it
    without end (measured: over 10 minutes with Ray 2.60)."""
    if address == "auto" or "://" in address:  # Ray finds the local cluster, or a Ray Client address
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"executor.address {address!r}: expected 'auto', 'host:port' (the address `ray start "
                         "--head` prints) or 'ray://host:port'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise RuntimeError(f"executor.address {address!r}: nothing answers there ({error}); start the cluster's head "
                           "with `ray start --head`, which prints the address to join, or correct the address") from None


def job_dependencies(tasks: Sequence[Any]) -> list[set[int]]:
    """For each task, the tasks whose model it starts from (a training job's ``checkpoint`` initialisation)."""
    by_model = {task.folder / "model.pt": index for index, task in enumerate(tasks)}
    needs = []
    for task in tasks:
        init = task.job.init if isinstance(task, JobTask) else None
        needs.append({by_model[init.path]} if init is not None and init.kind == "checkpoint"
                     and init.path in by_model else set())
    return needs


def _ready(pending: set[int], needs: list[set[int]], finished: set[int]) -> list[int]:
    return sorted(index for index in pending if needs[index] <= finished)


class Executor:
    """Runs tasks once their dependencies are finished; see the module docstring."""

    retries: int = 0

    def run(self, tasks: Sequence[Any], on_done: OnDone, *, work: Callable[[Any], Any] = run_task,
            cpus: int | None = None, gpu: bool | None = None) -> None:
        """Run ``work(task)`` for every task once its dependencies are done, calling ``on_done(index, result)``.

        ``cpus`` is what one task uses, for Ray's ``num_cpus`` (default: the executor's thread count); local workers
        are sized when the executor is made (:func:`make_executor`). ``gpu``: whether a task uses the run's GPU, for
        Ray's ``num_gpus`` (default: training jobs do, other work does not); local workers each see one GPU anyway.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        """What ran the jobs, for provenance."""
        raise NotImplementedError

    def _failed(self, task: Any, attempts: int, reason: str) -> JobFailed:
        return JobFailed(f"job {task.name} failed {attempts} time(s) (retries: {self.retries}); the last "
                         f"attempt: {reason}\nIts folder: {task.folder}")


class SerialExecutor(Executor):
    """One job after another in this process (dependencies first)."""

    def __init__(self, retries: int = 0):
        self.retries = retries

    def describe(self) -> dict:
        return {"executor": "serial", "workers": 1}

    def run(self, tasks: Sequence[Any], on_done: OnDone, *, work: Callable[[Any], Any] = run_task,
            cpus: int | None = None, gpu: bool | None = None) -> None:
        needs = job_dependencies(tasks)
        pending, finished = set(range(len(tasks))), set()
        while pending:
            ready = _ready(pending, needs, finished)
            if not ready:
                raise RuntimeError("jobs depend on each other in a cycle")
            index = ready[0]
            for attempt in range(1, self.retries + 2):
                try:
                    epochs = run_work(work, tasks[index])
                    break
                except JobError as error:
                    if attempt > self.retries:
                        raise self._failed(tasks[index], attempt, str(error)) from None
            pending.discard(index)
            finished.add(index)
            on_done(index, epochs)


def _init_worker(gpus: multiprocessing.Queue | None) -> None:
    if gpus is not None:  # one GPU per worker process, before torch touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())


class LocalExecutor(Executor):
    """Worker processes on this machine: one per GPU (each sees only its own), or ``workers`` CPU workers.

    A worker that dies (killed, out of memory) breaks the process pool: the jobs it and the other workers were
    running count one failed attempt each, a new pool starts, and they resume from their checkpoints.
    """

    def __init__(self, workers: int, retries: int = 2, gpus: Sequence[int] = ()):
        self.workers = len(gpus) if gpus else workers
        self.gpus = list(gpus)
        self.retries = retries

    def describe(self) -> dict:
        return {"executor": "local", "workers": self.workers, "gpus": self.gpus}

    def _pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
        queue = None
        if self.gpus:
            queue = context.Queue()
            for gpu in self.gpus:
                queue.put(gpu)
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_init_worker,
                                   initargs=(queue,))

    def run(self, tasks: Sequence[Any], on_done: OnDone, *, work: Callable[[Any], Any] = run_task,
            cpus: int | None = None, gpu: bool | None = None) -> None:
        needs = job_dependencies(tasks)
        pending, finished = set(range(len(tasks))), set()
        attempts = [0] * len(tasks)
        running: dict[Future, int] = {}
        pool = self._pool()

        def failed(index: int, reason: str) -> None:
            attempts[index] += 1
            if attempts[index] > self.retries:
                raise self._failed(tasks[index], attempts[index], reason)
            pending.add(index)

        try:
            while pending or running:
                for index in _ready(pending, needs, finished)[: self.workers - len(running)]:
                    pending.discard(index)
                    running[pool.submit(run_work, work, tasks[index])] = index
                if not running:
                    raise RuntimeError("jobs depend on each other in a cycle")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    index = running.pop(future)
                    try:
                        epochs = future.result()
                    except BrokenProcessPool:
                        broken = True
                        failed(index, "its worker process died")
                    except JobError as error:
                        failed(index, str(error))
                    else:
                        finished.add(index)
                        on_done(index, epochs)
                if broken:
                    for index in running.values():  # lost with the pool
                        failed(index, "a worker process died")
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._pool()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor(Executor):
    """Ray tasks with ``num_cpus=threads`` (or the ``cpus`` of a run; one GPU each for training jobs on a GPU run) on a
    running cluster (``address``) or on a local Ray instance started for the run and stopped after it.

    ``nodes`` counts the tasks each Ray node ran (by node id), over every run of this executor; :meth:`describe`
    reports how many nodes that was.
    """

    def __init__(self, workers: int, threads: int, retries: int = 2, address: str | None = None,
                 gpus_per_job: int = 0):
        self.workers = workers
        self.threads = threads
        self.retries = retries
        self.address = address
        self.gpus_per_job = gpus_per_job
        self.nodes: dict[str, int] = {}

    def describe(self) -> dict:
        described = {"executor": "ray", "workers": self.workers, "address": self.address or "local instance",
                     "gpus_per_job": self.gpus_per_job}
        if self.nodes:
            described["nodes"] = len(self.nodes)
        return described

    def run(self, tasks: Sequence[Any], on_done: OnDone, *, work: Callable[[Any], Any] = run_task,
            cpus: int | None = None, gpu: bool | None = None) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is a dependency
            raise RuntimeError("executor.kind: ray needs the ray package (pip install ray)") from None
        started = not ray.is_initialized()
        if started:
            options = {"address": self.address} if self.address else {"num_cpus": self.workers * self.threads}
            if self.address:
                _check_reachable(self.address)
            try:
                ray.init(**options, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except ConnectionError as error:
                raise RuntimeError(
                    f"executor.address {self.address!r}: could not join a Ray cluster there ({error}). Check that "
                    "one is running (`ray status` on its head). If it is: a cluster started with `ray start --head` "
                    "by Ray 2.59 or later asks for token authentication; set RAY_AUTH_MODE=token in this environment, "
                    "as on every node that joins, with the cluster's token in ~/.ray/auth_token or in RAY_AUTH_TOKEN "
                    "(`ray get-auth-token` on the head prints it)"
                ) from None
        gpus = self.gpus_per_job if (work is run_task if gpu is None else gpu) else 0
        remote = ray.remote(num_cpus=cpus or self.threads, num_gpus=gpus, max_retries=self.retries,
                            retry_exceptions=True)(_run_on_node)
        needs = job_dependencies(tasks)
        pending, finished = set(range(len(tasks))), set()
        running: dict = {}
        try:
            while pending or running:
                for index in _ready(pending, needs, finished):
                    pending.discard(index)
                    running[remote.remote(work, tasks[index])] = index
                if not running:
                    raise RuntimeError("jobs depend on each other in a cycle")
                [ref], _ = ray.wait(list(running), num_returns=1)
                index = running.pop(ref)
                try:
                    epochs, node = ray.get(ref)
                except Exception as error:  # RayTaskError (after retries) or a lost worker
                    cause = getattr(error, "cause", None) or error
                    raise self._failed(tasks[index], self.retries + 1, str(cause)) from None
                self.nodes[node] = self.nodes.get(node, 0) + 1
                finished.add(index)
                on_done(index, epochs)
        finally:
            if started:
                ray.shutdown()


def make_executor(params: ExecutorParams, threads: int, device: str) -> Executor:
    """The executor the parameters ask for, for tasks of ``threads`` CPU threads each (``train.threads`` for training
    jobs), sized from this machine where ``workers`` is null."""
    if params.kind == "serial":
        return SerialExecutor(params.retries)
    gpus = 0
    if device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    workers = params.workers or (gpus if gpus else max(1, available_cpus() // threads))
    if params.kind == "local":
        return LocalExecutor(workers, params.retries, gpus=list(range(min(gpus, workers))) if gpus else ())
    return RayExecutor(workers, threads, params.retries, params.address, gpus_per_job=1 if gpus else 0)
