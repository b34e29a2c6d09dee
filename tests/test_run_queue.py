"""dgsamp.engine.run_queue: runs side by side, results in order, failures listed with logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from dgsamp.engine.run_queue import Run, RunProgress, run_commands


def _sleeper(tmp_path, name: str, code: int = 0, seconds: float = 0.4) -> Run:
    """A run that records when it started and ended, then exits with ``code``."""
    script = (f"import json, sys, time; t0 = time.time(); time.sleep({seconds}); "
              f"json.dump([t0, time.time()], open({str(tmp_path / name)!r} + '.json', 'w')); "
              f"print('hello from {name}'); sys.exit({code})")
    return Run(name, [sys.executable, "-c", script], str(tmp_path / "logs" / f"{name}.log"))


def test_runs_overlap_keep_their_order_and_failures_are_listed(tmp_path, capsys):
    runs = [_sleeper(tmp_path, "a"), _sleeper(tmp_path, "b", code=3), _sleeper(tmp_path, "c"),
            _sleeper(tmp_path, "d")]
    results = run_commands(runs, jobs=2, title="test")
    assert [r.run.name for r in results] == ["a", "b", "c", "d"]
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].returncode == 3
    assert (tmp_path / "logs" / "c.log").read_text().strip() == "hello from c"
    spans = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in "abcd"}
    assert spans["b"][0] < spans["a"][1]  # a and b ran at the same time (2 jobs)
    err = capsys.readouterr().err
    assert "1 of 4 runs failed" in err and f"b: see {tmp_path / 'logs' / 'b.log'}" in err


def test_parallel_runs_get_their_share_of_the_cores(tmp_path, monkeypatch):
    from dgsamp.engine.run_queue import thread_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert thread_env(None, 1) is None  # one job: the environment as it is
    env = thread_env({"PATH": "/bin"}, 2, cores=8)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4" and env["PATH"] == "/bin"
    assert thread_env({}, 4, cores=2)["OMP_NUM_THREADS"] == "1"  # never 0
    assert thread_env({"OMP_NUM_THREADS": "3"}, 2, cores=8)["OMP_NUM_THREADS"] == "3"
    script = "import os; print(os.environ['OMP_NUM_THREADS'])"
    runs = [Run(n, [sys.executable, "-c", script], str(tmp_path / f"{n}.log")) for n in "ab"]
    run_commands(runs, jobs=2)
    expected = str(max(1, (__import__("os").cpu_count() or 1) // 2))
    assert (tmp_path / "a.log").read_text().strip() == expected


def test_a_zero_exit_without_its_result_is_a_failure(tmp_path):
    run = _sleeper(tmp_path, "x", seconds=0)
    run.done = lambda: False
    (result,) = run_commands([run])
    assert result.returncode == 0 and not result.ok


def test_progress_reports_runs_finished_elsewhere():
    console = Console(record=True, width=120)
    with RunProgress(2, "sweep", console=console) as progress:
        progress.finished("job 1", True, "/logs/1.log", 3.0)
        progress.finished("job 2", False, "/logs/2.log")
    text = console.export_text()
    assert "job 1: ok 3 s" in text and "2/2" in text
    assert "1 of 2 runs failed" in text and "job 2: see /logs/2.log" in text
    assert progress.failed == [("job 2", "/logs/2.log")]


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_commands([], jobs=0)


def test_sweep_watch_follows_results_and_failure_marks(tmp_path, capsys):
    import subprocess

    from conftest import ROOT  # noqa: F401  (puts the checkout on sys.path for tools.sweep)
    from mmengine.config import Config

    from tools.sweep import FAILED_MARK, Job, watch

    jobs = [Job(str(tmp_path / name), Config(), {}) for name in ("ok", "bad", "never")]
    for job in jobs:
        (tmp_path / Path(job.work_dir).name).mkdir()
    script = (f"import time; time.sleep(0.5); open({jobs[0].work_dir!r} + '/results.json', 'w'); "
              f"open({jobs[1].work_dir!r} + '/{FAILED_MARK}', 'w')")
    proc = subprocess.Popen([sys.executable, "-c", script])
    failed = watch([proc], jobs, poll_s=0.1)
    assert [Path(j.work_dir).name for j in failed] == ["bad", "never"]  # never: worker exited
    err = capsys.readouterr().err
    assert f"{jobs[1].work_dir}: see {jobs[1].work_dir}/train.log" in err
    assert "2 of 3 runs failed" in err
