"""Many trainings from one tool: a rich progress bar over runs, with an ETA, and the failures
listed at the end with their log files (tools/headline.py, tools/sweep.py, tools/frontier.py).

Two pieces, both usable without the other:

- ``RunProgress``: the bar and the failure list. ``with RunProgress(total, "headline") as p:``
  then ``p.finished(name, ok, log)`` after each run; on exit the failed runs are printed, each
  with its log path. Tools whose runs finish elsewhere (sweep's worker processes) call
  ``finished`` as they see results appear.
- ``run_commands(runs, jobs=1, title=...)``: each ``Run`` is one subprocess (typically
  ``tools/train.py CONFIG --work-dir DIR ...``) whose stdout and stderr go to ``run.log``; ``jobs``
  of them at a time, results in the order given. A run counts as failed when it exits non-zero
  or its ``done`` check (e.g. "cost.json says complete") is false afterwards.

Wall times of parallel runs include their contention for the CPU. With ``jobs`` > 1 each run's
thread pools are sized to its share of the cores (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` =
cores // jobs, at least 1, unless the caller's environment or ``run.env`` sets them): torch
otherwise starts one OpenMP thread per core in every run, and on a 2-core machine five such runs
spun on each other's barriers at 7.5 s per step where one run takes 0.12 s.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@dataclass
class Run:
    """One subprocess: ``command`` (argv), its combined output in ``log``."""

    name: str
    command: list[str]
    log: str
    cwd: str | None = None
    env: dict[str, str] | None = None
    done: Callable[[], bool] | None = None  # extra success check after a zero exit


@dataclass
class RunResult:
    run: Run
    returncode: int
    seconds: float
    ok: bool


@dataclass
class RunProgress:
    """A progress bar over ``total`` runs; failed runs are listed with their logs on exit."""

    total: int
    title: str = "runs"
    console: Console = field(default_factory=lambda: Console(stderr=True))
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __enter__(self) -> RunProgress:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.title, total=self.total, last="")
        return self

    def finished(self, name: str, ok: bool, log: str, seconds: float | None = None) -> None:
        """Advance the bar by one run; a failed one is remembered with its log path."""
        took = f" {seconds:.0f} s" if seconds is not None else ""
        self._say(f"[{self.title}] {name}: {'ok' if ok else 'FAILED'}{took}"
                  + ("" if ok else f" (log: {log})"))
        if not ok:
            self.failed.append((name, log))
        self._progress.update(self._task, advance=1, last=name)

    def __exit__(self, *exc) -> None:
        self._progress.stop()
        if self.failed:
            self._say(f"[{self.title}] {len(self.failed)} of {self.total} runs failed:")
            for name, log in self.failed:
                self._say(f"  {name}: see {log}")

    def _say(self, text: str) -> None:
        """A plain line above the bar: no markup (names hold brackets), paths never wrapped."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(base: dict[str, str] | None, jobs: int,
               cores: int | None = None) -> dict[str, str] | None:
    """``base`` (or this process's environment) with the thread variables set to a run's share
    of the cores when ``jobs`` > 1 and neither the caller nor ``base`` set them; None (inherit
    unchanged) for a single job."""
    if jobs <= 1:
        return base
    env = dict(os.environ if base is None else base)
    share = str(max(1, (cores or os.cpu_count() or 1) // jobs))
    for var in THREAD_VARS:
        env.setdefault(var, share)
    return env


def _run_one(run: Run, jobs: int = 1) -> RunResult:
    os.makedirs(os.path.dirname(os.path.abspath(run.log)), exist_ok=True)
    t0 = time.perf_counter()
    with open(run.log, "w") as log:
        rc = subprocess.call(run.command, stdout=log, stderr=subprocess.STDOUT, cwd=run.cwd,
                             env=thread_env(run.env, jobs))
    ok = rc == 0 and (run.done is None or run.done())
    return RunResult(run, rc, time.perf_counter() - t0, ok)


def run_commands(runs: Sequence[Run], jobs: int = 1, title: str = "runs") -> list[RunResult]:
    """Run ``runs`` as subprocesses, ``jobs`` at a time, under a progress bar; results in order."""
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    results: dict[int, RunResult] = {}
    with RunProgress(len(runs), title) as progress, ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_run_one, run, jobs): i for i, run in enumerate(runs)}
        for future in as_completed(futures):  # the bar advances as each run ends
            result = results[futures[future]] = future.result()
            progress.finished(result.run.name, result.ok, result.run.log, result.seconds)
    return [results[i] for i in range(len(runs))]
