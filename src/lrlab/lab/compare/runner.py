"""Running a comparison plan: one worker process per run, resumable, killable.

A comparison directory holds ``comparison.json`` (the plan, see ``plan``, and the one-line
error of any run that failed), ``runs/NAME`` (one run directory per run, see ``records``) and
``logs/NAME.log`` (each worker's output).

Each run is trained by its own worker process (``python -c``, so a crash or a kill of one
worker never touches the others); ``jobs`` workers share the machine's cores, each with
``max(1, cores // jobs)`` torch threads (and OMP/MKL set to match; when fewer units than
``jobs`` are left to run, e.g. one vectorised stack, they share the cores among them).
Running a comparison again skips finished runs (status ok, diverged, not-learning), resumes
interrupted or killed ones from their checkpoint, and retries failed ones.

Workers die with the process that started them (a parent-death signal: SIGTERM, which the
trainer treats like Ctrl-C: checkpoint and stop), and a worker finding its run directory still
locked by a predecessor waits ``LOCK_WAIT_S`` for it. ``--out`` is checked before anything
runs: files lrlab did not write, or another comparison's plan, are refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.compare.plan import (
    COMPARISON_FILE,
    COMPARISON_FILES,
    ComparisonPlan,
    PlannedRun,
    read_comparison,
)
from lrlab.lab.records import FINISHED, RunRecords, read_json, write_json_atomic
from lrlab.lab.train.config import config_from_dict

__all__ = ["RunOutcome", "run_comparison", "check_comparison_dir", "worker_main",
           "group_worker_main", "Terminated",
           "sigterm_as_interrupt", "LOCK_WAIT_S"]


@dataclass
class RunOutcome:
    name: str
    label: str
    status: str  # ok / diverged / not-learning / interrupted / failed / skipped-as-status
    summary: dict[str, Any]
    error: str | None = None
    skipped: bool = False
    resumed: bool = False
    seconds: float = 0.0


#: This module's import name (``lrlab.lab.compare.runner``), for the commands that start
#: workers: taken from the module itself, so moving the module cannot leave a stale string.
#: ``__spec__`` keeps the real name under ``python -m`` too, where ``__name__`` is
#: ``"__main__"``.
_MODULE = __spec__.name if __spec__ is not None else __name__


def _python_calling(entry: Callable[[str], int], job: Path) -> list[str]:
    """The ``python -c`` command that calls ``entry(job)``, ``entry`` a function of this
    module (``worker_main`` or ``group_worker_main``), and exits with what it returns."""
    name = entry.__name__
    return [sys.executable, "-c", f"import sys; from {_MODULE} import {name}; "
            f"sys.exit({name}(sys.argv[1]))", str(job)]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _stored_config_diff(run: PlannedRun) -> list[str]:
    records = RunRecords(run.config.run_dir())
    return run.config.result_diff(records.read_config()) if records.exists() else []


def _outcome_line(i: int, n: int, o: RunOutcome) -> str:
    s = o.summary or {}
    head = f"[{i}/{n}] {o.name}: "
    if o.status == "failed":
        return head + f"failed: {o.error}"
    acc = s.get("final_test_acc")
    text = o.status + (f" {acc:.4f}" if isinstance(acc, (int, float)) else "")
    if o.status == "diverged" and s.get("diverged_at"):
        d = s["diverged_at"]
        text += f" at update {d.get('update')} (lr {_num(d.get('lr'))})"
    if o.skipped:
        return head + f"skipped, already {text}"
    secs = s.get("time_s")
    if isinstance(secs, (int, float)):
        text += f" ({secs:.1f} s)" if secs < 10 else f" ({secs:.0f} s)"
    return head + text + (" [resumed]" if o.resumed else "")


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def _launch(cmd: list[str], log: Path, threads: int) -> tuple[Any, subprocess.Popen]:
    """Start a worker process: ``threads`` torch/OMP/MKL threads, its output appended to
    ``log``, stopped (SIGTERM) when this process dies. Returns the open log and the process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    fh = log.open("a")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, preexec_fn=_die_with_parent(os.getpid()))
    return fh, proc


class _Worker:
    """One run in its own ``python -c`` process; the result comes back as a JSON file."""

    def __init__(self, run: PlannedRun, out: Path, threads: int, resumed: bool,
                 nproc: int = 1) -> None:
        self.run, self.resumed = run, resumed
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.job = logs / f"{run.name}.job.json"
        self.result = logs / f"{run.name}.result.json"
        self.result.unlink(missing_ok=True)
        write_json_atomic(self.job, {"config": run.config.to_dict(), "result": str(self.result)})
        if nproc > 1:  # one torchrun per run: its ranks share this worker's cores
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={nproc}", "-m", _MODULE, str(self.job)]
        else:
            cmd = _python_calling(worker_main, self.job)
        self.log, self.proc = _launch(cmd, logs / f"{run.name}.log", threads)
        self.started = time.perf_counter()

    def outcomes(self) -> list[RunOutcome]:
        return [self.outcome()]

    def outcome(self) -> RunOutcome:
        self.log.close()
        run = self.run
        seconds = time.perf_counter() - self.started
        data: dict[str, Any] = {}
        if self.result.exists():
            try:
                data = read_json(self.result)
            except LrlabError:
                data = {}
        if data.get("status"):
            return RunOutcome(run.name, run.label, data["status"], data.get("summary") or {},
                              data.get("error"), resumed=self.resumed, seconds=seconds)
        code = self.proc.returncode
        why = f"killed by signal {-code}" if code is not None and code < 0 else \
            f"exited with code {code}"
        return RunOutcome(run.name, run.label, "failed", {},
                          f"worker {why} (see logs/{run.name}.log)", resumed=self.resumed,
                          seconds=seconds)


class _GroupWorker:
    """Runs that share one stack (``lrlab.lab.train.vectorised``) in one ``python -c`` process;
    one result per run comes back in one JSON file."""

    def __init__(self, runs: list[PlannedRun], out: Path, threads: int,
                 resumed: list[bool]) -> None:
        self.runs, self.resumed = runs, resumed
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stem = f"vectorised-{runs[0].name}"
        self.log_name = f"logs/{stem}.log"
        self.job = logs / f"{stem}.job.json"
        self.result = logs / f"{stem}.result.json"
        self.result.unlink(missing_ok=True)
        write_json_atomic(self.job, {"configs": [r.config.to_dict() for r in runs],
                                     "result": str(self.result)})
        cmd = _python_calling(group_worker_main, self.job)
        self.log, self.proc = _launch(cmd, logs / f"{stem}.log", threads)
        self.started = time.perf_counter()

    def outcomes(self) -> list[RunOutcome]:
        self.log.close()
        seconds = time.perf_counter() - self.started
        data: dict[str, Any] = {}
        if self.result.exists():
            try:
                data = read_json(self.result)
            except LrlabError:
                data = {}
        got = data.get("runs") or {}
        code = self.proc.returncode
        why = f"killed by signal {-code}" if code is not None and code < 0 else \
            f"exited with code {code}"
        out = []
        for run, resumed in zip(self.runs, self.resumed):
            r = got.get(run.name) or {}
            if r.get("status"):
                out.append(RunOutcome(run.name, run.label, r["status"], r.get("summary") or {},
                                      r.get("error"), resumed=resumed, seconds=seconds))
            else:
                out.append(RunOutcome(run.name, run.label, "failed", {},
                                      data.get("error") or f"vectorised worker {why} (see "
                                      f"{self.log_name})", resumed=resumed, seconds=seconds))
        return out


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the worker receive SIGTERM when this process dies, however
    it dies (Linux ``prctl(PR_SET_PDEATHSIG)``); the worker's trainer treats SIGTERM like
    Ctrl-C: it checkpoints and stops. None where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm


#: How long a worker waits for a run directory still locked by a predecessor (a worker of a
#: killed comparison that is writing its last checkpoint) before it reports the run failed.
LOCK_WAIT_S = 60.0


def worker_main(job_path: str) -> int:
    """Entry point of a worker process: train one run and write its result as JSON."""
    job = json.loads(Path(job_path).read_text())
    result_path = Path(job["result"])
    try:
        import torch

        from lrlab.lab.train.trainer import train

        config = config_from_dict(job["config"], source="comparison")
        if config.threads:
            torch.set_num_threads(config.threads)
        result = train(config, resume=True, progress=False, echo=False, lock_wait=LOCK_WAIT_S)
        payload = {"status": result.status, "summary": result.summary}
    except KeyboardInterrupt:
        payload = {"status": "interrupted", "summary": {}}
    except Exception as exc:  # one run failing must never stop the comparison
        traceback.print_exc()
        payload = {"status": "failed", "summary": {}, "error": _error_line(exc)}
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports for the run
        write_json_atomic(result_path, payload)
    return 0


def _error_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if isinstance(exc, LrlabError) else f"{type(exc).__name__}: {message}"


def group_worker_main(job_path: str) -> int:
    """Entry point of a vectorised worker: train its runs as one stack, write each result."""
    job = json.loads(Path(job_path).read_text())
    result_path = Path(job["result"])
    configs = [config_from_dict(c, source="comparison") for c in job["configs"]]
    payload: dict[str, Any] = {"runs": {}}
    try:
        import torch

        from lrlab.lab.train.vectorised import train_group

        if configs[0].threads:
            torch.set_num_threads(configs[0].threads)
        results = train_group(configs, lock_wait=LOCK_WAIT_S)
        for cfg, res in zip(configs, results):
            if isinstance(res, BaseException):
                entry = {"status": "failed", "summary": {}, "error": _error_line(res)}
            else:
                entry = {"status": res.status, "summary": res.summary}
            payload["runs"][cfg.run_name()] = entry
    except KeyboardInterrupt:
        payload["runs"] = {c.run_name(): {"status": "interrupted", "summary": {}}
                           for c in configs}
    except Exception as exc:  # the group failing must never stop the comparison
        traceback.print_exc()
        payload["error"] = _error_line(exc)
    write_json_atomic(result_path, payload)
    return 0


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", dynamic_ncols=True, leave=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM to the comparison's parent (``kill PID``): stop like Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt)."""
    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_comparison_dir(plan: ComparisonPlan, force: bool = False) -> None:
    """Refuse an ``--out`` that holds files a comparison did not write, or another
    comparison (a different set of runs) unless ``force``."""
    out = plan.out
    if not out.exists():
        return
    if not out.is_dir():
        raise LrlabError(f"--out {out} exists and is not a directory")
    meta_path = out / COMPARISON_FILE
    if not meta_path.exists():
        foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if foreign:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise LrlabError(f"--out {out} holds files lrlab did not write ({shown}) and no "
                             f"{COMPARISON_FILE}; choose an empty or new directory")
        return
    stored = read_comparison(out)
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")
                     and p.name not in COMPARISON_FILES and p.suffix != ".png")
    if foreign:
        raise LrlabError(f"--out {out} holds files lrlab did not write ({', '.join(foreign[:4])})"
                         "; move them away or choose another --out")
    ours = [(r.name, r.label, r.seed) for r in plan.runs]
    theirs = [(r["name"], r["label"], r.get("seed")) for r in stored["runs"]]
    if sorted(ours) != sorted(theirs) and not force:
        raise LrlabError(f"--out {out} holds another comparison ({stored.get('source') or '?'}, "
                         f"{len(theirs)} runs; this one has {len(ours)}); use a new --out, or "
                         "--force to replace its plan (its runs stay on disk under runs/)")


def run_comparison(plan: ComparisonPlan, jobs: int = 1, *, progress: bool | None = None,
                   echo: bool = True, write: Callable[[str], None] | None = None,
                   nproc_per_run: int = 1, force: bool = False,
                   vectorize: str = "auto") -> list[RunOutcome]:
    """Run every run of ``plan`` not already finished, ``jobs`` at a time; write the plan and
    any failures to ``comparison.json``. Returns one outcome per run, in plan order.

    ``force`` replaces the plan of another comparison already in ``plan.out`` (see
    ``check_comparison_dir``). Workers die with this process (SIGTERM, which they treat as
    Ctrl-C: checkpoint and stop).

    ``nproc_per_run > 1`` launches each run under torchrun with that many data-parallel
    ranks (gloo on the CPU, nccl on CUDA); threads per rank are the cores divided by
    ``jobs × nproc_per_run``.

    ``vectorize`` (``auto``, ``on``, ``off``): runs that can share a stack train together in
    one worker (``lrlab.lab.train.vectorised``; ``group_runs`` says which); ``auto`` runs the others
    in their own processes, ``on`` refuses a plan with a run that cannot be vectorised (an
    LrlabError naming it). ``jobs`` counts workers, a stack being one.

    A KeyboardInterrupt waits for the workers (they checkpoint and stop) and is re-raised.
    """
    if jobs <= 0:
        raise LrlabError(f"--jobs must be a positive integer, got {jobs}")
    if vectorize == "on" or nproc_per_run > 1:  # refuse before anything is written
        _units([(r, False) for r in plan.runs], vectorize, nproc_per_run, None)
    meta_path, meta = _prepare_out(plan, force)
    if progress is None:
        progress = echo and sys.stderr.isatty()
    bar = _bar(len(plan.runs), progress)
    say = write or (bar.write if bar is not None else print)
    if nproc_per_run <= 0:
        raise LrlabError(f"--nproc-per-run must be a positive integer, got {nproc_per_run}")
    tally = _Tally(len(plan.runs), meta_path, meta, say if echo else None, bar)
    pending = _pending(plan, tally)
    units = _units(pending, vectorize, nproc_per_run, say if echo else None)
    # fewer units than --jobs (one stack, say): the cores are shared among those that run
    threads = max(1, _cores() // (max(1, min(jobs, len(units))) * nproc_per_run))
    try:
        _run_units(units, jobs, threads, plan.out, vectorize, nproc_per_run, tally)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()
    return [tally.outcomes[r.name] for r in plan.runs]


def _prepare_out(plan: ComparisonPlan, force: bool) -> tuple[Path, dict[str, Any]]:
    """Check ``plan.out`` and its stored runs, then write the plan to ``comparison.json``
    with the failures of earlier attempts at runs still in the plan. Returns the file's
    path and what it holds (the tally keeps its failures up to date)."""
    check_comparison_dir(plan, force)
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        diff = _stored_config_diff(run)
        if diff:
            raise LrlabError(f"{run.config.run_dir()} already holds a run with a different "
                             f"{', '.join(diff)}; use another --out")
    meta_path = out / COMPARISON_FILE
    old_failures: dict[str, str] = {}
    if meta_path.exists():
        old_failures = dict(read_comparison(out).get("failures") or {})
    names = {r.name for r in plan.runs}
    meta = plan.to_dict()
    meta["failures"] = {k: v for k, v in old_failures.items() if k in names}
    write_json_atomic(meta_path, meta)
    return meta_path, meta


class _Tally:
    """The outcomes so far: each finished run is kept, its failure (or success) recorded in
    ``comparison.json``, echoed as a line through ``say`` (None: silent) and ticked on the
    progress bar."""

    def __init__(self, n: int, meta_path: Path, meta: dict[str, Any],
                 say: Callable[[str], None] | None, bar: Any) -> None:
        self.n, self.meta_path, self.meta, self.say, self.bar = n, meta_path, meta, say, bar
        self.outcomes: dict[str, RunOutcome] = {}
        self.done = 0

    def finish(self, o: RunOutcome) -> None:
        """Record the outcome ``o`` of one run."""
        self.done += 1
        self.outcomes[o.name] = o
        failures = self.meta["failures"]
        if o.status == "failed":
            failures[o.name] = o.error or "failed"
        else:
            failures.pop(o.name, None)
        write_json_atomic(self.meta_path, self.meta)
        if self.say is not None:
            self.say(_outcome_line(self.done, self.n, o))
        if self.bar is not None:
            self.bar.update(1)


def _pending(plan: ComparisonPlan, tally: _Tally) -> list[tuple[PlannedRun, bool]]:
    """The runs still to train, each with whether it resumes an interrupted run; the
    finished ones go to ``tally`` as skipped."""
    pending: list[tuple[PlannedRun, bool]] = []
    for run in plan.runs:
        records = RunRecords(run.config.run_dir())
        summary = records.summary() or {}
        if records.exists() and summary.get("status") in FINISHED:
            tally.finish(RunOutcome(run.name, run.label, summary["status"], summary,
                                    skipped=True))
        else:
            pending.append((run, records.exists()))
    return pending


def _run_units(units: list[list[tuple[PlannedRun, bool]]], jobs: int, threads: int, out: Path,
               vectorize: str, nproc_per_run: int, tally: _Tally) -> None:
    """Train ``units`` in worker processes, at most ``jobs`` at a time, each outcome to
    ``tally`` as its worker ends. A KeyboardInterrupt stops the workers (``_stop``) and is
    re-raised."""
    running: list[_Worker | _GroupWorker] = []
    try:
        while units or running:
            while units and len(running) < jobs:
                running.append(_start(units.pop(0), out, threads, vectorize, nproc_per_run))
            time.sleep(0.05)
            for w in [w for w in running if w.proc.poll() is not None]:
                running.remove(w)
                for o in w.outcomes():
                    tally.finish(o)
    except KeyboardInterrupt as stop:
        _stop(running, stop)
        raise


def _start(unit: list[tuple[PlannedRun, bool]], out: Path, threads: int, vectorize: str,
           nproc_per_run: int) -> _Worker | _GroupWorker:
    """The worker of one unit: a run alone, or a stack; runs without a thread count of their
    own get ``threads``."""
    for run, _ in unit:
        if run.config.threads is None:
            run.config.threads = threads
    if len(unit) == 1 and not _is_stack(unit, vectorize, nproc_per_run):
        run, resumed = unit[0]
        return _Worker(run, out, run.config.threads, resumed, nproc_per_run)
    return _GroupWorker([r for r, _ in unit], out, unit[0][0].config.threads or threads,
                        [res for _, res in unit])


def _stop(running: list[_Worker | _GroupWorker], stop: KeyboardInterrupt) -> None:
    """Wait for the workers after an interrupt, asking those that go on to stop.

    After Ctrl-C, workers in our process group got the same signal and checkpoint; one that
    did not (the signal was sent to this process only) is asked to stop (SIGINT) after a
    grace period. After SIGTERM (:class:`Terminated`) no worker got anything: they are asked
    at once (SIGTERM). A second interrupt while waiting kills the worker.
    """
    grace = 0 if isinstance(stop, Terminated) else 2
    for w in running:
        try:
            try:
                w.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                w.proc.send_signal(signal.SIGTERM if grace == 0 else signal.SIGINT)
                w.proc.wait()
        except KeyboardInterrupt:
            w.proc.kill()
            w.proc.wait()
        w.log.close()


def _is_stack(unit: list[tuple[PlannedRun, bool]], vectorize: str, nproc_per_run: int) -> bool:
    """A unit of one run is a stack of one only under ``--vectorize on``."""
    return vectorize == "on" and nproc_per_run == 1 and len(unit) == 1


def _units(pending: list[tuple[PlannedRun, bool]], vectorize: str, nproc_per_run: int,
           say: Callable[[str], None] | None) -> list[list[tuple[PlannedRun, bool]]]:
    """The pending runs as units of work, in plan order: stacks and single runs."""
    from lrlab.lab.train.vectorised import group_runs

    if nproc_per_run > 1:
        if vectorize == "on":
            raise LrlabError("--vectorize on: runs under torchrun (--nproc-per-run > 1) "
                             "cannot be vectorised")
        vectorize = "off"
    groups, alone, reasons = group_runs([r.config for r, _ in pending], vectorize)
    units = [[pending[i] for i in g] for g in groups] + [[pending[i]] for i in alone]
    units.sort(key=lambda u: pending.index(u[0]))
    if say is not None and pending and vectorize != "off":
        sizes = "; ".join(f"{len(g)}: {pending[g[0]][0].name}" + (
            f" .. {pending[g[-1]][0].name}" if len(g) > 1 else "") for g in groups)
        grouped = sum(len(g) for g in groups)
        line = (f"vectorised: {grouped} of {len(pending)} runs in {len(groups)} stack"
                f"{'s' if len(groups) != 1 else ''}" + (f" ({sizes})" if groups else ""))
        if not groups:
            line = f"vectorised: none of the {len(pending)} runs can share a stack"
        if alone and groups:
            why = sorted(set(reasons.values()))
            line += (f"; {len(alone)} in their own processes"
                     + (f" ({', '.join(why)})" if why else ""))
        elif alone:
            why = sorted(set(reasons.values()))
            line += f" ({', '.join(why)})" if why else " (no two share data, model and budget)"
        say(line)
    return units


if __name__ == "__main__":  # a torchrun rank of one run: python -m lrlab.lab.compare.runner JOB
    sys.exit(worker_main(sys.argv[1]))
