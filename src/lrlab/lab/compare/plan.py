"""Comparison plans: which runs a comparison trains, as data (no processes here).

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
Every run's config passes the typed validation of ``TrainConfig`` while the plan is made, so
a bad value (``--grid optimizer=nosuchopt``) is refused before anything runs. A plan is
written to ``comparison.json`` (``ComparisonPlan.to_dict``) and read back, checked, by
``read_comparison``; any runner (``runner``: worker processes) takes the same plan.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError, SpecError
from lrlab.lab.compare.presets import get_preset
from lrlab.lab.records import COMPARISON_FILE, COMPARISON_FILES, read_comparison
from lrlab.lab.train.config import TrainConfig, config_from_dict, load_toml
from lrlab.schedules import parse

__all__ = ["PlannedRun", "ComparisonPlan", "split_grid_values", "parse_grid", "coerce_value",
           "plan_comparison", "sanitize_name", "read_comparison", "COMPARISON_FILE",
           "COMPARISON_FILES"]

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


def coerce_value(key: str, text: str, what: str = "--grid") -> Any:
    """Convert one --grid value to the type of TrainConfig field ``key`` (``what`` names the
    option in errors)."""
    name = _field_name(key, what)
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
        raise LrlabError(f"{what} {key}: cannot read {text!r} as {kind}") from None
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
    given = dict(grid or {})
    base = _base_plan(preset, file, given)
    # the given grid first; the preset's or file's adds the keys it does not set
    grid = {**given, **{k: v for k, v in base.grid.items() if k not in given}}
    plan_seeds = _plan_seeds(base.seeds, overrides, seeds)
    if epochs is not None:
        overrides["epochs"] = epochs
    for key in grid:
        if key in overrides:
            raise LrlabError(f"--{key.replace('_', '-')} and --grid {key} both given")
    rows = base.rows or [{"label": "", "settings": {}, "notes": [], "reference": None}]
    out_dir = Path(out) if out else base.default_out
    runs, labels = _expand(rows, grid, plan_seeds, base.common, overrides, out_dir)
    # the grid renames the rows' labels: contrasts no longer name them
    contrasts = [] if grid else base.contrasts
    return ComparisonPlan(out_dir, base.title or "Comparison", base.source, runs, labels,
                          base.notes, base.trace, base.baseline, contrasts)


@dataclass
class _Base:
    """What a preset, a TOML file or bare ``--grid`` options give a plan before the caller's
    grid, seeds, epochs and overrides: common settings, rows (``{label, settings, notes,
    reference}``), a grid, the seeds, the report's title, notes, trace, baseline and
    contrasts, and the default ``--out``."""

    title: str
    source: str
    default_out: Path
    common: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    notes: list[str] = field(default_factory=list)
    trace: str | None = None
    baseline: str | None = None
    contrasts: list[list[str]] = field(default_factory=list)


def _base_plan(preset: str | None, file: str | Path | None,
               grid: dict[str, list[Any]]) -> _Base:
    """The plan's base: the preset, else the TOML file, else the bare ``grid``."""
    if preset and file:
        raise LrlabError("give --preset or a TOML file, not both")
    if preset:
        return _preset_base(preset)
    if file:
        return _file_base(Path(file))
    if grid:
        return _Base("Grid comparison", "grid", Path("compare") / "grid")
    raise LrlabError("nothing to compare: give --preset NAME, a TOML file, or --grid "
                     "KEY=V1,V2")


def _preset_base(name: str) -> _Base:
    """The base of preset ``name`` (its source, when it has one, is the first note)."""
    p = get_preset(name)
    notes = list(p.notes)
    if p.source:
        notes.insert(0, f"Source: {p.source}.")
    rows = [{"label": r.label, "settings": dict(r.settings), "notes": list(r.notes),
             "reference": r.reference.to_dict() if r.reference else None} for r in p.rows]
    return _Base(p.title, f"preset {p.name}", Path("compare") / p.name,
                 common={**p.common, "epochs": p.epochs}, rows=rows,
                 grid={k: list(v) for k, v in p.grid.items()}, seeds=list(p.seeds),
                 notes=notes, trace=p.trace, baseline=p.baseline,
                 contrasts=[list(c) for c in p.contrasts])


def _file_base(path: Path) -> _Base:
    """The base of a TOML comparison file (module docstring): its top-level TrainConfig keys
    are the common settings; ``seeds``, else a common ``seed``, the seeds."""
    data = load_toml(path)
    meta = {k: data.pop(k) for k in list(data) if k in _TOML_META}
    common = _norm_keys(data, str(path))
    rows, grid = _table_rows(meta, str(path))
    title = str(meta.get("title") or f"Comparison {path.stem}")
    n = meta.get("notes", [])
    base = _Base(title, f"file {path}", Path("compare") / sanitize_name(path.stem),
                 common=common, rows=rows, grid=grid,
                 notes=[n] if isinstance(n, str) else list(n), trace=meta.get("trace"),
                 baseline=meta.get("baseline"))
    if "seeds" in meta:
        base.seeds = _seed_list(meta["seeds"], str(path))
    elif "seed" in common:
        base.seeds = [int(common["seed"])]
    return base


def _plan_seeds(default: list[int], overrides: dict[str, Any],
                seeds: Sequence[int] | None) -> list[int]:
    """The seeds of every row: ``seeds`` when given, else a ``seed`` among the ``overrides``
    (taken out of them: each run gets its own), else ``default``."""
    plan_seeds = default
    if "seed" in overrides:
        plan_seeds = [int(overrides.pop("seed"))]
    if seeds is not None:
        plan_seeds = _seed_list(list(seeds), "--seeds")
    return plan_seeds


def _expand(rows: list[dict[str, Any]], grid: dict[str, list[Any]], seeds: list[int],
            common: dict[str, Any], overrides: dict[str, Any],
            out_dir: Path) -> tuple[list[PlannedRun], list[dict[str, Any]]]:
    """The runs (rows × grid × seeds, in that order) and the labels (one per row and grid
    point, in display order). Settings: ``common``, then the row's, the grid point's and the
    ``overrides``, each above the one before."""
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
            settings = {**common, **row["settings"], **dict(zip(keys, combo)), **overrides}
            runs += _seeded_runs(label, base, settings, seeds, out_dir)
    return runs, labels


def _seeded_runs(label: str, base: str, settings: dict[str, Any], seeds: list[int],
                 out_dir: Path) -> list[PlannedRun]:
    """One run of ``settings`` per seed, named ``{base}-s{seed}``, its config checked."""
    runs = []
    for seed in seeds:
        name = f"{base}-s{seed}"
        config = config_from_dict({**settings, "seed": seed, "out": str(out_dir / "runs"),
                                   "name": name}, source=f"run {label!r}")
        _check_schedule(config, label)
        runs.append(PlannedRun(name, label, seed, config))
    return runs


def _check_schedule(config: TrainConfig, label: str) -> None:
    try:
        parse(config.schedule)
    except SpecError as exc:
        raise LrlabError(f"run {label!r}: schedule {config.schedule!r}: {exc}") from None
