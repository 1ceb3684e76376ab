"""The house's layout as the design states it (docs/design.md, *Layers*): no private name
crosses a file, the lab's rooms point one way, no import repeated inside a function, and
every import path that lrlab 0.1 or the README documents still works."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


MODULES = _modules()


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_is_imported_across_files():
    """``from lrlab.x import _name`` and ``module._name`` on an imported lrlab module are
    private names crossing a file: a name two files need is public and documented."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}  # local name -> lrlab module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = _absolute(node, _package(name, path))
                if not module.startswith("lrlab"):
                    continue
                for a in node.names:
                    if _private(a.name):
                        found.append(f"{name}: from {module} import {a.name}")
                    elif f"{module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("lrlab") and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in aliases and _private(node.attr):
                found.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    assert not found, "private names crossing files:\n" + "\n".join(found)


def _top_modules(tree: ast.Module) -> set[str]:
    """Modules a file imports at its top (``from M import x`` counts as importing M)."""
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_import_inside_a_function_repeats_one_at_the_top():
    """A function-level import defers loading a module; of a module the file already imports
    at its top it defers nothing and only hides what the file depends on."""
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = _top_modules(tree)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and not node.level and node.module in top:
                    found.append(f"{name}.{fn.name}: from {node.module} import ...")
                elif isinstance(node, ast.Import):
                    found += [f"{name}.{fn.name}: import {a.name}" for a in node.names
                              if a.name in top]
    assert not found, "imported again inside a function:\n" + "\n".join(sorted(set(found)))


#: the lab's rooms in import order: a room may import from the rooms before it, never after
ROOMS = ["records", "data", "models", "train", "report", "compare", "tune"]


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["lrlab", "lab"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in ROOMS else None


def test_the_lab_rooms_point_one_way():
    """records, data -> models -> train -> report -> compare -> tune; and nothing below the
    lab (schedules, scheduler, optim, finder, diagnostics, integrations) imports the lab."""
    found = []
    for name, path in MODULES.items():
        here = _room(name)
        below_lab = not name.startswith(("lrlab.lab", "lrlab.cli", "lrlab.__main__"))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                targets = [_absolute(node, _package(name, path))]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                there = _room(target)
                if below_lab and target.startswith("lrlab.lab") and name != "lrlab":
                    found.append(f"{name} -> {target}")
                if here and there and ROOMS.index(there) > ROOMS.index(here):
                    found.append(f"{name} ({here}) -> {target} ({there})")
    assert not found, "imports pointing back up:\n" + "\n".join(found)


def test_every_lab_package_says_what_it_offers():
    for path in sorted((SRC / "lrlab").rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 40, f"{path.relative_to(SRC)} has no docstring"


#: lrlab 0.1's flat lab modules and their public names: each must still import from its old
#: path (a moved module with a DeprecationWarning)
OLD_PATHS = {
    "lrlab.lab.auto_lr": ["FINDER_DEFAULTS", "VAL_EXAMPLES", "VAL_SUBSET_SEED",
        "default_plot_path", "pick_lr", "run_find_lr", "suggested_schedule", "train_command",
        "validation_batches"],
    "lrlab.lab.compare": ["ComparisonResult", "compare"],
    "lrlab.lab.config": ["TABULAR_DATASETS", "TrainConfig", "config_from_dict", "config_of_run",
        "load_toml"],
    "lrlab.lab.data": ["BLOBS_CLUSTER_STD", "BLOBS_FEATURES", "BLOBS_SAMPLES", "BLOBS_TEST_SIZE",
        "CLASSIFICATION_PARAMS", "CLASSIFICATION_SPLIT_SEED", "CLASSIFICATION_TEST_SIZE",
        "CLASSIFICATION_VAL_SIZE", "DATASETS", "DATA_ENV", "DEFAULT_VAL_FRACTION", "Dataset",
        "IDX_FILES", "VAL_SPLIT_SEED", "default_val_size", "find_idx_files", "load_dataset",
        "search_roots", "validation_indices"],
    "lrlab.lab.device": ["ENVIRONMENT_KEYS", "autocast_dtype", "run_environment", "select_device"],
    "lrlab.lab.distributed": ["DistContext", "init_distributed"],
    "lrlab.lab.idx": ["IMAGES_MAGIC", "LABELS_MAGIC", "read_bytes", "read_idx_images",
        "read_idx_labels"],
    "lrlab.lab.models": ["LENET_INPUT", "MLP_DEFAULT_HIDDEN", "MODELS", "TRANSFORMER_OPTIONS",
        "build_model", "count_params", "mlp_layout", "parse_hidden"],
    "lrlab.lab.observations": ["OVERFIT_EPOCHS", "RunData", "SPIKE", "TraceRow", "divergence",
        "divergence_cause", "divergence_text", "has_warmup", "num", "observations", "run_beta2",
        "trace_rows", "warmup_length"],
    "lrlab.lab.plan": ["COMPARISON_FILE", "COMPARISON_FILES", "ComparisonPlan", "PlannedRun",
        "coerce_value", "parse_grid", "plan_comparison", "read_comparison", "sanitize_name",
        "split_grid_values"],
    "lrlab.lab.plots": ["BAND", "band_curve", "lr_curve", "mean_curve", "plot_lr", "plot_metric",
        "plot_sharpness", "sharpness_key"],
    "lrlab.lab.presets": ["LRLAB_RECIPE_D2L", "LRLAB_RECIPE_QUICKSTART", "LRLAB_RECIPE_UNIT6",
        "PRESETS", "Preset", "Reference", "Row", "get_preset"],
    "lrlab.lab.records": ["FINISHED", "RunLock", "RunRecords", "check_metrics", "read_json",
        "read_jsonl", "write_json_atomic"],
    "lrlab.lab.report": ["LabelStats", "Report", "STATUSES", "build_report", "label_stats",
        "load_runs", "summary_csv", "write_report"],
    "lrlab.lab.runner": ["LOCK_WAIT_S", "RunOutcome", "Terminated", "check_comparison_dir",
        "group_worker_main", "run_comparison", "sigterm_as_interrupt", "worker_main"],
    "lrlab.lab.schedule_view": ["ScheduleCurve", "ScheduleView", "build_view", "format_view",
        "plot_view", "sparkline"],
    "lrlab.lab.search_space": ["Dimension", "SearchSpace", "WARMUP_KEY", "parse_space"],
    "lrlab.lab.sequences": ["CHARS_CONTEXT", "CHARS_FRACTIONS", "MAX_CONTEXT", "MODADD_FRACTIONS",
        "MODADD_P", "MODADD_SPLIT_SEED", "SEQUENCE_DATASETS", "Sequences", "UNKNOWN", "chars",
        "chars_text", "decode", "modadd"],
    "lrlab.lab.setup": ["RunParts", "build_run", "optimizer_hyper"],
    "lrlab.lab.stats": ["ALPHA", "BETTER", "Contrast", "LEVEL", "NOT_COMPARABLE", "NO_CLEAR",
        "Summary", "WORSE", "adjust_family", "holm", "reference_verdict", "summarize", "welch"],
    "lrlab.lab.study_storage": ["HeartbeatJournalStorage", "MAX_RETRY", "open_storage",
        "quiet_optuna", "storage_label"],
    "lrlab.lab.targets": ["IGNORE_INDEX", "LN2", "at_least_float32", "correct", "counted", "flat",
        "mean_loss", "sum_loss"],
    "lrlab.lab.trainer": ["FINISHED", "RunResult", "epoch_permutation", "evaluate", "train",
        "update_indices"],
    "lrlab.lab.transformer": ["DEFAULT_DEPTH", "DEFAULT_HEADS", "DEFAULT_NORM", "DEFAULT_WIDTH",
        "INIT_STD", "MLP_RATIO", "NORMS", "Transformer", "transformer_params"],
    "lrlab.lab.tune": ["METRICS", "PRUNERS", "SAMPLERS", "TuneResult", "TuneSettings", "run",
        "settings_from", "tune"],
    "lrlab.lab.tune_presets": ["TUNE_PRESETS", "TunePreset", "get_tune_preset"],
    "lrlab.lab.tune_report": ["schedule_family", "write_tune_report"],
    "lrlab.lab.vectorised": ["VECTORISED_MODELS", "auto_skip_reason", "group_key", "group_runs",
        "sequential_supported", "stacked_sequential", "train_group", "vectorise_reason"],
}

#: paths that are real packages re-exporting 0.1's names (no warning)
PUBLIC = ("lrlab.lab.compare", "lrlab.lab.report", "lrlab.lab.tune", "lrlab.lab.data",
          "lrlab.lab.models", "lrlab.lab.records")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={"PYTHONPATH": str(SRC), "PATH": ""})


def test_old_import_paths_still_import_every_documented_name():
    """One fresh interpreter imports every 0.1 path under ``-W error``: a moved module must
    raise DeprecationWarning naming its new path; then, warnings ignored, every name is
    there (the moved path is the same module object as the new one)."""
    code = f"""
import importlib, sys, warnings
from lrlab.moved import MOVED
OLD = {OLD_PATHS!r}
PUBLIC = {PUBLIC!r}
for old, names in OLD.items():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if old in PUBLIC:
            module = importlib.import_module(old)
        else:
            assert old in MOVED, old
            try:
                importlib.import_module(old)
            except DeprecationWarning as w:
                assert MOVED[old] in str(w), (old, str(w))
            else:
                raise AssertionError(old + " imported without a DeprecationWarning")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(old)
    if old not in PUBLIC:
        assert module is importlib.import_module(MOVED[old]), old
        assert module.__spec__.name == MOVED[old], module.__spec__.name
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, (old, missing)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    from lrlab.lab.trainer import train  # noqa: F401  (already imported: no second warning)
print("ok")
"""
    r = _run(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_warning_points_at_the_importing_line():
    r = _run("import warnings\nwarnings.simplefilter('always')\n"
             "import lrlab.lab.plan  # the user's line\n")
    assert r.returncode == 0, r.stderr
    assert "<string>:3: DeprecationWarning: lrlab.lab.plan moved to lrlab.lab.compare.plan" \
        in r.stderr, r.stderr


def test_every_path_the_readme_names_resolves():
    """Each ``lrlab.x.y`` in backticks in the README is a module, or a name in one."""
    text = (ROOT / "README.md").read_text()
    paths = sorted(set(re.findall(r"`(lrlab(?:\.[A-Za-z_]\w*)+)", text)))
    assert paths, "the README names no lrlab path?"
    code = f"""
import importlib, warnings
warnings.simplefilter("error")
bad = []
for path in {paths!r}:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            bad.append(path)
        break
    else:
        bad.append(path)
print(bad)
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


@pytest.mark.parametrize("old", ["lrlab.lab.trainer", "lrlab.lab.schedule_view"])
def test_monkeypatching_the_old_path_patches_the_module(old):
    import importlib
    import warnings

    from lrlab.moved import MOVED

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert importlib.import_module(old) is importlib.import_module(MOVED[old])
