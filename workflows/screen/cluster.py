"""Many systems screened (or their ground truth computed) on Dask distributed: one task per system,
the model loaded once per worker.

By default a local cluster of worker processes (one thread each) runs on this machine; give the
address of a running scheduler to use any other cluster, such as one from dask-jobqueue on SLURM or
PBS (see the README). Each task writes its system's results to ``<out>/<system slug>.db`` as they
are produced, so a screen that is interrupted (a killed client, a lost worker, a preempted job)
resumes from there when it runs again. GPU tasks ask for the Dask resource ``GPU`` (start such
workers with ``--resources GPU=1``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from workflows.data.labellers import Labeller

from .models import load_screen_model
from .pipeline import Timer, ground_truth, screen_system
from .result import SystemResult
from .settings import ScreenSettings, ScreenSystem
from .store import ScreenStore


@dataclass(frozen=True)
class SystemOutcome:
    """A system's result, or why it failed (``error``: one line)."""

    system: ScreenSystem
    result: SystemResult | None = None
    error: str | None = None


def screen_systems(systems: Sequence[ScreenSystem], model: str, reference: Labeller | None, out: str | os.PathLike,
                   settings: ScreenSettings = ScreenSettings(), *, workers: int = 2, scheduler: str | None = None,
                   gpu: bool = False, on_outcome: Callable[[SystemOutcome], None] | None = None
                   ) -> list[SystemOutcome]:
    """Screen every system, one Dask task each; outcomes in the order of ``systems``.

    Args:
        systems: the systems (their slugs must differ: each has its own store).
        model: the ML model's name (see :func:`.models.load_screen_model`).
        reference: the reference calculator's recipe, or None to skip verification.
        out: the folder of the stores, ``<out>/<slug>.db``.
        settings: the screen's settings.
        workers: worker processes of the local cluster (one thread each); 0 runs the systems one
            after another in this process, without Dask.
        scheduler: a running Dask scheduler's address (``tcp://host:8786``) instead of a local cluster.
        gpu: the tasks ask for one ``GPU`` resource each (a local cluster gives each worker one).
        on_outcome: called with each outcome as it arrives (in completion order).

    Raises:
        ValueError: two systems with one slug; ``workers`` < 0.
    """
    _check_run(systems, workers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arguments = [(system, model, reference, str(out / f"{system.slug}.db"), settings) for system in systems]
    return _per_system(screen_task, arguments, workers, scheduler, gpu, on_outcome)


def ground_truth_systems(systems: Sequence[ScreenSystem], reference: Labeller, paths: Sequence[str | os.PathLike],
                         settings: ScreenSettings = ScreenSettings(), *, workers: int = 2,
                         scheduler: str | None = None,
                         on_outcome: Callable[[SystemOutcome], None] | None = None) -> list[SystemOutcome]:
    """The ground truth of every system (:func:`.pipeline.ground_truth`: the reference relaxes every
    placement) into the store at the matching path of ``paths``, one Dask task each, resuming what
    the stores hold. Outcomes in the order of ``systems``: ``error`` set where a system failed,
    ``result`` always None. ``workers`` and ``scheduler`` as in :func:`screen_systems`.

    Raises:
        ValueError: two systems with one slug; ``workers`` < 0; ``paths`` not one per system.
    """
    _check_run(systems, workers)
    if len(paths) != len(systems):
        raise ValueError(f"{len(systems)} systems but {len(paths)} store paths")
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    arguments = [(system, reference, str(path), settings) for system, path in zip(systems, paths)]
    return _per_system(ground_truth_task, arguments, workers, scheduler, False, on_outcome)


def _check_run(systems: Sequence[ScreenSystem], workers: int) -> None:
    """``ValueError`` unless the systems' slugs differ (each has its own store and Dask task) and
    ``workers`` >= 0."""
    slugs = [s.slug for s in systems]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"two systems share a name: {sorted({s for s in slugs if slugs.count(s) > 1})}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")


def screen_task(system: ScreenSystem, model: str, reference: Labeller | None, path: str,
                settings: ScreenSettings) -> SystemOutcome:
    """One system, run where it lands (a Dask worker or this process). Never raises: any failure
    (bad input, a model or reference failing on the clean slab, a locked or full disk) becomes the
    outcome's ``error``, the first line of its message."""
    try:
        loaded = load_screen_model(model, settings.device, settings.dtype)
        result = screen_system(system, loaded, reference, ScreenStore(path), settings, Timer())
    except Exception as err:  # one system's failure of any kind must not stop the others
        return _failed(system, err)
    return SystemOutcome(system, result=result)


def ground_truth_task(system: ScreenSystem, reference: Labeller, path: str, settings: ScreenSettings
                      ) -> SystemOutcome:
    """One system's ground truth, run where it lands; never raises, as :func:`screen_task`."""
    try:
        ground_truth(system, reference, ScreenStore(path), settings)
    except Exception as err:  # one system's failure of any kind must not stop the others
        return _failed(system, err)
    return SystemOutcome(system)


def _failed(system: ScreenSystem, err: Exception) -> SystemOutcome:
    """The outcome of a system that raised ``err``: the first line of its message."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return SystemOutcome(system, error=f"{system.name}: {message}")


def _per_system(task: Callable[..., SystemOutcome], arguments: list[tuple], workers: int, scheduler: str | None,
                gpu: bool, on_outcome: Callable[[SystemOutcome], None] | None) -> list[SystemOutcome]:
    """``task(*args)`` for each of ``arguments`` (the system first): in this process one after
    another when ``workers`` is 0 and no scheduler is given, else on Dask."""
    if workers == 0 and scheduler is None:
        outcomes = []
        for args in arguments:
            outcomes.append(task(*args))
            if on_outcome is not None:
                on_outcome(outcomes[-1])
        return outcomes
    return _on_dask(task, arguments, workers, scheduler, gpu, on_outcome)


def _on_dask(task: Callable[..., SystemOutcome], arguments: list[tuple], workers: int, scheduler: str | None,
             gpu: bool, on_outcome: Callable[[SystemOutcome], None] | None) -> list[SystemOutcome]:
    """Submit one ``task`` per system to a local cluster (or ``scheduler``) and gather the outcomes."""
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               resources={"GPU": 1} if gpu else None, silence_logs=logging.ERROR)
        client = Client(cluster)
        client.run(torch.set_num_threads, 1)  # one core per local worker; remote workers keep their own setting
    else:
        cluster, client = None, Client(scheduler)
    try:
        futures = {client.submit(task, *args, key=f"{task.__name__}-{args[0].slug}", pure=False,
                                 resources={"GPU": 1} if gpu else None): k for k, args in enumerate(arguments)}
        outcomes: list[SystemOutcome | None] = [None] * len(arguments)
        for future in as_completed(futures):
            k = futures[future]
            try:
                outcomes[k] = future.result()
            except Exception as err:  # a worker lost or killed: this system failed, the others go on
                outcomes[k] = SystemOutcome(arguments[k][0], error=f"{arguments[k][0].name}: {err}")
            if on_outcome is not None:
                on_outcome(outcomes[k])
        return outcomes
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
