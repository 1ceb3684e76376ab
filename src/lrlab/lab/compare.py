"""Comparisons: a grid of runs side by side, run by worker processes, resumable.

A comparison directory holds ``comparison.json`` (the plan: labels, run names, seeds, notes
and reference numbers, and the one-line error of any run that failed), ``runs/NAME`` (one
run directory per run, see ``records``) and ``logs/NAME.log`` (each worker's output).

Plans come from a preset (``presets``), from a TOML file, or from ``--grid`` options, and are
expanded as rows × grid × seeds. A TOML file has common settings at the top level (TrainConfig
keys, plus optional ``title``, ``seeds``, ``trace`` and ``baseline``), ``[[run]]`` tables each
with a ``label`` and TrainConfig keys, and an optional ``[grid]`` table of lists::

    epochs = 5
    seeds = [0, 1]
    [[run]]
    label = "constant"
    schedule = "constant()"
    [grid]
    lr = [0.01, 0.003]

Run names are the label (sanitised) plus ``-s{seed}``; the label groups seeds in the report.
Each run is trained by its own worker process (``python -c``, so a crash or a kill of one
worker never touches the others); ``jobs`` workers share the machine's cores, each with
``max(1, cores // jobs)`` torch threads (and OMP/MKL set to match). Running a comparison
again skips finished runs (status ok, diverged, not-learning), resumes interrupted or killed
ones from their checkpoint, and retries failed ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.config import TrainConfig, config_from_dict, load_toml
from lrlab.lab.records import RunRecords, read_json, write_json_atomic

__all__ = ["PlannedRun", "ComparisonPlan", "RunOutcome", "split_grid_values", "parse_grid",
           "coerce_value", "plan_comparison", "run_comparison", "sanitize_name",
           "FINISHED", "COMPARISON_FILE"]

FINISHED = ("ok", "diverged", "not-learning")
COMPARISON_FILE = "comparison.json"
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# keys a grid or a run table may not set: they belong to the comparison, not to a run
_NOT_PER_RUN = {"out", "name", "quiet"}
_TOML_META = {"title", "seeds", "trace", "baseline", "notes", "run", "grid"}


# -- plans -------------------------------------------------------------------------------------
@dataclass
class PlannedRun:
    name: str
    label: str
    seed: int
    config: TrainConfig


@dataclass
class ComparisonPlan:
    out: Path
    title: str
    source: str
    runs: list[PlannedRun]
    labels: list[dict[str, Any]]  # {"label", "notes", "reference"} in display order
    notes: list[str] = field(default_factory=list)
    trace: str | None = None
    baseline: str | None = None
    contrasts: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "title": self.title, "source": self.source,
                "notes": self.notes, "trace": self.trace, "baseline": self.baseline,
                "contrasts": self.contrasts, "labels": self.labels,
                "runs": [{"name": r.name, "label": r.label, "seed": r.seed} for r in self.runs]}


def split_grid_values(text: str) -> list[str]:
    """Split a --grid value list: on ``;`` when there is one outside brackets, else on commas
    outside ``()``/``[]`` (schedule specs keep their commas)."""
    def split_on(sep: str) -> list[str]:
        parts, depth, cur = [], 0, []
        for ch in text:
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            if ch == sep and depth == 0:
                parts.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
        parts.append("".join(cur))
        return [p.strip() for p in parts]

    parts = split_on(";")
    if len(parts) == 1:
        parts = split_on(",")
    if any(not p for p in parts):
        raise LrlabError(f"--grid: empty value in {text!r}")
    return parts


def _field_name(key: str, what: str) -> str:
    name = key.strip().replace("-", "_")
    if name not in _FIELDS or name in _NOT_PER_RUN:
        valid = ", ".join(sorted(n.replace("_", "-") for n in _FIELDS if n not in _NOT_PER_RUN))
        raise LrlabError(f"{what}: unknown key {key!r} (train options: {valid})")
    return name


def coerce_value(key: str, text: str) -> Any:
    """Convert one --grid value to the type of TrainConfig field ``key``."""
    name = _field_name(key, "--grid")
    kind = str(_FIELDS[name].type)
    low = text.strip().lower()
    if kind.endswith("None") and low in ("none", "null"):
        return None
    try:
        if name == "lr":
            return "auto" if low == "auto" else float(text)
        if name == "betas":
            a, b = (float(v) for v in text.replace(",", " ").split())
            return (a, b)
        if kind.startswith("bool"):
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise LrlabError(f"--grid {key}: cannot read {text!r} as {kind}") from None
    return text.strip()


def parse_grid(options: Sequence[str]) -> dict[str, list[Any]]:
    """``["optimizer=sgd,adam", "schedule=constant();cosine()"]`` -> {field: [values]}."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        if not sep or not key.strip():
            raise LrlabError(f"--grid: expected KEY=V1,V2,..., got {option!r}")
        name = _field_name(key, "--grid")
        if name in grid:
            raise LrlabError(f"--grid: {key} given twice")
        grid[name] = [coerce_value(name, v) for v in split_grid_values(values)]
    return grid


def sanitize_name(label: str) -> str:
    """A directory name from a label: ``warmup(1ep) >> cosine()`` -> ``warmup_1ep+cosine``."""
    text = re.sub(r"\s*>>\s*", "+", label).replace("()", "")
    text = re.sub(r"[^A-Za-z0-9.+=-]+", "_", text)
    text = re.sub(r"_*([+=])_*", r"\1", re.sub(r"_+", "_", text)).strip("_.")
    return text or "run"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return ",".join(_fmt_value(x) for x in v)
    return str(v)


def _norm_keys(data: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {_field_name(k, what): v for k, v in data.items()}


def _table_rows(data: dict[str, Any], source: str) -> tuple[list[dict[str, Any]], dict]:
    """Rows ({label, settings, notes, reference}) and the grid of a TOML comparison file."""
    rows = []
    tables = data.get("run", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise LrlabError(f"{source}: 'run' must be [[run]] tables")
    for i, table in enumerate(tables):
        table = dict(table)
        label = str(table.pop("label", "") or f"run{i + 1}")
        notes = table.pop("notes", [])
        notes = [notes] if isinstance(notes, str) else list(notes)
        rows.append({"label": label, "settings": _norm_keys(table, f"{source} [[run]] {label}"),
                     "notes": notes, "reference": None})
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise LrlabError(f"{source}: [grid] must be a table of lists")
    out_grid = {}
    for key, values in grid.items():
        name = _field_name(key, f"{source} [grid]")
        if not isinstance(values, list) or not values:
            raise LrlabError(f"{source}: [grid] {key} must be a non-empty list")
        out_grid[name] = values
    return rows, out_grid


def _seed_list(value: Any, what: str) -> list[int]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    if isinstance(value, int):
        value = [value]
    try:
        seeds = [int(v) for v in value]
    except (TypeError, ValueError):
        raise LrlabError(f"{what}: seeds must be integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise LrlabError(f"{what}: seeds must be a non-empty list of distinct integers")
    return seeds


def plan_comparison(
    *,
    preset: str | None = None,
    file: str | Path | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> ComparisonPlan:
    """Expand a preset / TOML file / grid into named runs (rows × grid × seeds).

    ``overrides`` (TrainConfig keys, e.g. from command-line flags) apply to every run, above
    the rows' own settings; ``epochs`` and ``seeds`` replace the preset's or file's defaults.
    Raises LrlabError (one line) for an unknown preset, key or value.
    """
    overrides = _norm_keys(dict(overrides or {}), "flags")
    grid = dict(grid or {})
    common: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    title, source, notes = "", "", []
    trace = baseline = None
    plan_seeds: list[int] = [0]
    contrasts: list[list[str]] = []
    if preset and file:
        raise LrlabError("give --preset or a TOML file, not both")
    if preset:
        from lrlab.lab.presets import get_preset

        p = get_preset(preset)
        common = {**p.common, "epochs": p.epochs}
        rows = [{"label": r.label, "settings": dict(r.settings), "notes": list(r.notes),
                 "reference": r.reference.to_dict() if r.reference else None} for r in p.rows]
        title, source, notes = p.title, f"preset {p.name}", list(p.notes)
        if p.source:
            notes.insert(0, f"Source: {p.source}.")
        trace, baseline, plan_seeds = p.trace, p.baseline, list(p.seeds)
        contrasts = [list(c) for c in p.contrasts]
        for key, values in p.grid.items():
            grid.setdefault(key, list(values))
        default_out = Path("compare") / p.name
    elif file:
        path = Path(file)
        data = load_toml(path)
        meta = {k: data.pop(k) for k in list(data) if k in _TOML_META}
        common = _norm_keys(data, str(path))
        rows, file_grid = _table_rows(meta, str(path))
        for key, values in file_grid.items():
            grid.setdefault(key, values)
        title = str(meta.get("title") or f"Comparison {path.stem}")
        source = f"file {path}"
        n = meta.get("notes", [])
        notes = [n] if isinstance(n, str) else list(n)
        trace, baseline = meta.get("trace"), meta.get("baseline")
        if "seeds" in meta:
            plan_seeds = _seed_list(meta["seeds"], str(path))
        elif "seed" in common:
            plan_seeds = [int(common["seed"])]
        default_out = Path("compare") / sanitize_name(path.stem)
    elif grid:
        title, source = "Grid comparison", "grid"
        default_out = Path("compare") / "grid"
    else:
        raise LrlabError("nothing to compare: give --preset NAME, a TOML file, or --grid "
                         "KEY=V1,V2")
    if "seed" in overrides:
        plan_seeds = [int(overrides.pop("seed"))]
    if seeds is not None:
        plan_seeds = _seed_list(list(seeds), "--seeds")
    if epochs is not None:
        overrides["epochs"] = epochs
    for key in grid:
        if key in overrides:
            raise LrlabError(f"--{key.replace('_', '-')} and --grid {key} both given")
    if not rows:
        rows = [{"label": "", "settings": {}, "notes": [], "reference": None}]
    out_dir = Path(out) if out else default_out
    title = title or "Comparison"

    runs: list[PlannedRun] = []
    labels: list[dict[str, Any]] = []
    keys = list(grid)
    used: dict[str, str] = {}
    for row in rows:
        for combo in itertools.product(*(grid[k] for k in keys)):
            parts = [row["label"]] if row["label"] else []
            parts += [f"{k.replace('_', '-')}={_fmt_value(v)}" for k, v in zip(keys, combo)]
            label = " ".join(parts) or "run"
            if any(d["label"] == label for d in labels):
                raise LrlabError(f"two runs have the label {label!r}; labels must differ")
            labels.append({"label": label, "notes": list(row["notes"]),
                           "reference": row["reference"]})
            base = sanitize_name(label)
            if base in used:
                base = f"{base}-{len(used)}"
            used[base] = label
            for seed in plan_seeds:
                settings = {**common, **row["settings"], **dict(zip(keys, combo)), **overrides}
                name = f"{base}-s{seed}"
                settings.update(seed=seed, out=str(out_dir / "runs"), name=name)
                config = config_from_dict(settings, source=f"run {label!r}")
                _check_schedule(config, label)
                runs.append(PlannedRun(name, label, seed, config))
    if grid:  # the grid renames the rows' labels: contrasts no longer name them
        contrasts = []
    return ComparisonPlan(out_dir, title, source, runs, labels, notes, trace, baseline,
                          contrasts)


def _check_schedule(config: TrainConfig, label: str) -> None:
    from lrlab.errors import SpecError
    from lrlab.schedules import parse

    try:
        parse(config.schedule)
    except SpecError as exc:
        raise LrlabError(f"run {label!r}: schedule {config.schedule!r}: {exc}") from None


# -- running -------------------------------------------------------------------------------------
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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _stored_config_diff(config: TrainConfig) -> list[str]:
    records = RunRecords(config.run_dir())
    if not records.exists():
        return []
    stored = records.read_config()
    ours = config.result_fields()
    return sorted(k for k, v in ours.items() if k in stored and k != "model"
                  and stored[k] != (list(v) if isinstance(v, tuple) else v))


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
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.log = (logs / f"{run.name}.log").open("a")
        self.started = time.perf_counter()
        if nproc > 1:  # one torchrun per run: its ranks share this worker's cores
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={nproc}", "-m", "lrlab.lab.compare", str(self.job)]
        else:
            cmd = [sys.executable, "-c", "import sys; from lrlab.lab.compare import "
                   "worker_main; sys.exit(worker_main(sys.argv[1]))", str(self.job)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     preexec_fn=_die_with_parent(os.getpid()))

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

        from lrlab.lab.trainer import train

        config = config_from_dict(job["config"], source="comparison")
        if config.threads:
            torch.set_num_threads(config.threads)
        result = train(config, resume=True, progress=False, echo=False, lock_wait=LOCK_WAIT_S)
        payload = {"status": result.status, "summary": result.summary}
    except KeyboardInterrupt:
        payload = {"status": "interrupted", "summary": {}}
    except Exception as exc:  # one run failing must never stop the comparison
        traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, LrlabError):
            message = f"{type(exc).__name__}: {message}"
        payload = {"status": "failed", "summary": {}, "error": message}
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports for the run
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


#: What a comparison directory of ours holds, besides the figures (``*.png``).
COMPARISON_FILES = (COMPARISON_FILE, "runs", "logs", "report.md", "report.html", "summary.csv")


def read_comparison(directory: Path) -> dict[str, Any]:
    """``comparison.json`` of ``directory``, checked: LrlabError naming what is wrong."""
    path = directory / COMPARISON_FILE
    meta = read_json(path, dict)
    runs = meta.get("runs")
    if not isinstance(runs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"]
            and isinstance(r.get("label"), str) for r in runs):
        raise LrlabError(f"{path}: 'runs' must be a list of objects with a name and a label")
    for r in runs:
        if r["name"] in (".", "..") or "/" in r["name"] or "\\" in r["name"]:
            raise LrlabError(f"{path}: run name {r['name']!r} is not a directory name")
        seed = r.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise LrlabError(f"{path}: run {r['name']!r} has seed {seed!r}, expected an integer")
    for key, kind in (("labels", list), ("notes", list), ("contrasts", list),
                      ("failures", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise LrlabError(f"{path}: {key!r} must be a {'list' if kind is list else 'object'}"
                             f", found a {type(meta[key]).__name__}")
    for entry in meta.get("labels") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise LrlabError(f"{path}: each of 'labels' must be an object with a label")
    for key in ("title", "source", "trace", "baseline"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise LrlabError(f"{path}: {key!r} must be a string")
    return meta


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
                   nproc_per_run: int = 1, force: bool = False) -> list[RunOutcome]:
    """Run every run of ``plan`` not already finished, ``jobs`` at a time; write the plan and
    any failures to ``comparison.json``. Returns one outcome per run, in plan order.

    ``force`` replaces the plan of another comparison already in ``plan.out`` (see
    ``check_comparison_dir``). Workers die with this process (SIGTERM, which they treat as
    Ctrl-C: checkpoint and stop).

    ``nproc_per_run > 1`` launches each run under torchrun with that many data-parallel
    ranks (gloo on the CPU, nccl on CUDA); threads per rank are the cores divided by
    ``jobs × nproc_per_run``.

    A KeyboardInterrupt waits for the workers (they checkpoint and stop) and is re-raised.
    """
    if jobs <= 0:
        raise LrlabError(f"--jobs must be a positive integer, got {jobs}")
    check_comparison_dir(plan, force)
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        diff = _stored_config_diff(run.config)
        if diff:
            raise LrlabError(f"{run.config.run_dir()} already holds a run with a different "
                             f"{', '.join(diff)}; use another --out")
    meta_path = out / COMPARISON_FILE
    old_failures: dict[str, str] = {}
    if meta_path.exists():
        old_failures = dict(read_comparison(out).get("failures") or {})
    names = {r.name for r in plan.runs}
    failures = {k: v for k, v in old_failures.items() if k in names}
    meta = plan.to_dict()
    meta["failures"] = failures
    write_json_atomic(meta_path, meta)

    if progress is None:
        progress = echo and sys.stderr.isatty()
    bar = _bar(len(plan.runs), progress)
    say = write or (bar.write if bar is not None else print)
    if nproc_per_run <= 0:
        raise LrlabError(f"--nproc-per-run must be a positive integer, got {nproc_per_run}")
    threads = max(1, _cores() // (jobs * nproc_per_run))
    n = len(plan.runs)
    outcomes: dict[str, RunOutcome] = {}
    done = 0

    def finish(o: RunOutcome) -> None:
        nonlocal done
        done += 1
        outcomes[o.name] = o
        if o.status == "failed":
            failures[o.name] = o.error or "failed"
        else:
            failures.pop(o.name, None)
        meta["failures"] = failures
        write_json_atomic(meta_path, meta)
        if echo:
            say(_outcome_line(done, n, o))
        if bar is not None:
            bar.update(1)

    pending: list[tuple[PlannedRun, bool]] = []
    for run in plan.runs:
        records = RunRecords(run.config.run_dir())
        summary = records.summary() or {}
        if records.exists() and summary.get("status") in FINISHED:
            finish(RunOutcome(run.name, run.label, summary["status"], summary, skipped=True))
        else:
            pending.append((run, records.exists()))
    running: list[_Worker] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                run, resumed = pending.pop(0)
                if run.config.threads is None:
                    run.config.threads = threads
                running.append(_Worker(run, out, run.config.threads, resumed, nproc_per_run))
            time.sleep(0.05)
            for w in [w for w in running if w.proc.poll() is not None]:
                running.remove(w)
                finish(w.outcome())
    except KeyboardInterrupt as stop:
        # After Ctrl-C, workers in our process group got the same signal and checkpoint; one
        # that did not (the signal was sent to this process only) is asked to stop after a
        # grace period. After SIGTERM (Terminated) no worker got anything: ask them at once.
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
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()
    return [outcomes[r.name] for r in plan.runs]


if __name__ == "__main__":  # a torchrun rank of one run: python -m lrlab.lab.compare JOB
    sys.exit(worker_main(sys.argv[1]))
