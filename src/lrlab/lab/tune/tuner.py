"""``lrlab tune``: search the LR, the schedule and any other training setting with Optuna.

One call (:func:`tune`) is one worker of a study:

1. **Search.** Trials are ``lrlab train`` runs whose settings come from the search space
   (:mod:`lrlab.lab.tune.space`) on top of a base configuration (a tuning preset, a TOML
   file, and/or train flags). The objective is read on the **validation** split only: the
   final epoch's validation accuracy (``metric="val_acc"``, maximised) or loss
   (``"val_loss"``, minimised). The test set is never read by the search. A trial that
   diverges is a completed trial worth the chance level of the metric (a diverged model is
   no better than one that ignores its input), tagged ``diverged`` with its LR and update,
   so the sampler learns where "too high" begins; a trial stopped by the pruner (Optuna's
   median or Hyperband pruner on the per-epoch validation metric) is ``PRUNED``.
2. **Budget.** ``trials`` counts finished trials (complete or pruned) of the whole study,
   over every worker: each worker takes trials until the study has that many, so N workers
   started with the same command split the work. A worker also stops taking new trials
   after ``timeout`` seconds. A worker killed mid-trial leaves a trial whose heartbeat stops;
   the next worker that looks marks it failed and runs a copy of it (same parameters, a new
   number; see :mod:`lrlab.lab.tune.storage`), so no trial is lost or counted twice. A
   trial interrupted with Ctrl-C / SIGTERM is failed and retried the same way when the
   command is run again.
3. **Finish** (``final_seeds`` > 0): the best trial's settings and the base ("default")
   settings are each trained on ``final_seeds`` fresh seeds as an ``lrlab compare`` in
   ``OUT/final``, and their **test** accuracies are reported with 95% CIs and Welch's test:
   the one place the test set is read. The winner is written as ``OUT/best.toml`` and as an
   ``lrlab train`` command.
4. **Report**: ``OUT/report.md`` / ``report.html`` (:mod:`lrlab.lab.tune.report`).

Equal budgets: with ``balance="schedule"`` (a key of the space with ``choice``), each new
trial is given the value of that key that has had the fewest trials, so every schedule
family gets the same number of trials (Sivaprasad et al. 2020, "Optimizer benchmarking
needs to account for hyperparameter tuning"); the others keys are still sampled.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.records import Divergence, write_json_atomic
from lrlab.lab.train.config import TrainConfig, config_from_dict, dump_toml, load_toml
from lrlab.lab.tune.space import SearchSpace, parse_space
from lrlab.lab.tune.storage import (
    check_storage,
    open_storage,
    quiet_optuna,
    storage_file,
    storage_label,
)

__all__ = ["tune", "run", "TuneResult", "TuneSettings", "SAMPLERS", "PRUNERS", "METRICS",
           "settings_from"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
#: objective name -> (summary key, per-epoch row key, direction)
METRICS = {"val_acc": ("final_val_acc", "val_acc", "maximize"),
           "val_loss": ("final_val_loss", "val_loss", "minimize")}
_STUDY_ATTR = "lrlab"
#: seconds between looks at the study while another worker holds the last trials
POLL_S = 1.0
#: settings of a tune TOML file / preset besides the base config and [space]
_TUNE_KEYS = {"title", "space", "trials", "timeout", "sampler", "pruner", "metric",
              "final_seeds", "balance", "default", "study", "notes"}


@dataclass
class TuneSettings:
    """Everything one study is: base configuration, space and search options."""

    base: dict[str, Any]
    space: SearchSpace
    study: str
    title: str = ""
    trials: int | None = None
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    metric: str = "val_acc"
    final_seeds: int = 3
    balance: str | None = None
    default: dict[str, Any] = field(default_factory=dict)  # the baseline's own settings
    notes: list[str] = field(default_factory=list)
    sampler_seed: int = 0

    def identity(self) -> dict[str, Any]:
        """What a study is made of: re-running with a different one is refused."""
        return {"version": 1, "space": self.space.to_dict(), "base": _jsonable(self.base),
                "metric": self.metric, "sampler": self.sampler, "balance": self.balance}

    @property
    def direction(self) -> str:
        return METRICS[self.metric][2]


@dataclass
class TuneResult:
    out: Path
    study: str
    storage: str
    finished: int = 0
    best: dict[str, Any] | None = None  # {"number", "value", "settings"}
    final: dict[str, Any] | None = None  # see _final
    report: Path | None = None
    command: str | None = None
    interrupted: bool = False
    lines: list[str] = field(default_factory=list)


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(d), default=list))


# -- settings ----------------------------------------------------------------------------------
def settings_from(*, preset: str | None = None, file: str | Path | None = None,
                  space: Sequence[str] | Mapping[str, Any] | None = None,
                  overrides: Mapping[str, Any] | None = None, study: str | None = None,
                  trials: int | None = None, timeout: float | None = None,
                  sampler: str | None = None, pruner: str | None = None,
                  metric: str | None = None, final_seeds: int | None = None,
                  balance: str | None = None, sampler_seed: int = 0) -> TuneSettings:
    """Merge a tuning preset or TOML file with explicit arguments (which win) and check it
    all; nothing is opened or written. LrlabError, one line, for anything wrong."""
    data: dict[str, Any] = {}
    source = "tune"
    if preset and file:
        raise LrlabError("give --preset or a TOML file, not both")
    if preset:
        from lrlab.lab.tune.presets import get_tune_preset

        data = get_tune_preset(preset).to_dict()
        source = f"preset {preset}"
    elif file:
        data = load_toml(file)
        source = str(file)
    base = {k: v for k, v in data.items() if k not in _TUNE_KEYS}
    base.update({k.replace("-", "_"): v for k, v in dict(overrides or {}).items()})
    for k in ("out", "name", "quiet"):
        base.pop(k, None)
    if "seed" in base and not isinstance(base["seed"], int):
        raise LrlabError(f"{source}: seed must be an integer")
    config = config_from_dict(base, source)  # the base alone is a valid run
    if config.val_size == 0:
        raise LrlabError("tune chooses on the validation split, and this configuration has "
                         "none (val_size 0); give --val-size N")
    space_data = space if space else data.get("space")
    if isinstance(space_data, str):  # one KEY=DISTRIBUTION entry
        space_data = [space_data]
    if space_data and not isinstance(space_data, Mapping | list | tuple):
        raise LrlabError(f"{source}: space must be a [space] table or KEY=DISTRIBUTION "
                         f"strings, got {space_data!r}")
    if not space_data:
        raise LrlabError("tune: the search space is empty; give --space KEY=DISTRIBUTION "
                         "(e.g. --space 'lr=log(1e-4,1e-1)')")
    s = TuneSettings(base=base, space=parse_space(space_data, base),
                     study=study or str(data.get("study") or preset or "study"),
                     title=str(data.get("title") or ""),
                     notes=[str(n) for n in ([data["notes"]] if isinstance(
                         data.get("notes"), str) else data.get("notes", []))])
    s.trials = trials if trials is not None else data.get("trials")
    s.timeout = timeout if timeout is not None else data.get("timeout")
    s.sampler = _word("sampler", sampler or data.get("sampler") or "tpe", source)
    s.pruner = _word("pruner", pruner or data.get("pruner") or "median", source)
    s.metric = _word("metric", metric or data.get("metric") or "val_acc", source)
    s.final_seeds = final_seeds if final_seeds is not None else data.get("final_seeds", 3)
    s.balance = balance if balance is not None else data.get("balance")
    if s.balance is not None:
        s.balance = _word("balance", s.balance, source)
    s.default = dict(data.get("default", {}))
    s.sampler_seed = sampler_seed
    _check(s, source)
    return s


def _word(name: str, value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise LrlabError(f"{source}: {name} must be a string, got {value!r}")
    return value.strip().lower().replace("-", "_") if name in ("metric", "balance") \
        else value.strip().lower()


def _check(s: TuneSettings, source: str) -> None:
    if s.sampler not in SAMPLERS:
        raise LrlabError(f"--sampler: {s.sampler!r} is not one of {', '.join(SAMPLERS)}")
    if s.pruner not in PRUNERS:
        raise LrlabError(f"--pruner: {s.pruner!r} is not one of {', '.join(PRUNERS)}")
    if s.metric not in METRICS:
        raise LrlabError(f"--metric: {s.metric!r} is not one of {', '.join(METRICS)}")
    for name, v in (("trials", s.trials), ("final_seeds", s.final_seeds)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0
                              or (name == "trials" and v == 0)):
            raise LrlabError(f"{source}: {name} must be a whole number"
                             f"{' >= 1' if name == 'trials' else ' >= 0'}, got {v!r}")
    if s.timeout is not None:
        if isinstance(s.timeout, bool) or not isinstance(s.timeout, int | float) or \
                not math.isfinite(s.timeout) or s.timeout <= 0:
            raise LrlabError(f"{source}: timeout must be a number of seconds > 0, "
                             f"got {s.timeout!r}")
    if s.sampler == "grid":
        size = s.space.grid_size()  # refuses continuous ranges
        if s.trials is None:
            s.trials = size
    if s.trials is None and s.timeout is None:
        raise LrlabError("tune needs a budget: --trials N and/or --timeout SECONDS")
    if s.balance is not None:
        dims = {d.key: d for d in s.space.dims}
        key = s.balance.replace("-", "_")
        if key not in dims or dims[key].kind != "choice":
            raise LrlabError(f"--balance {s.balance}: must be a key of the space given as "
                             "choice(...)")
        s.balance = key
    if not isinstance(s.default, dict):
        raise LrlabError(f"{source}: [default] must be a table of train settings")
    if s.default:
        config_from_dict({**s.base, **s.default}, f"{source} [default]")
    if any(c in s.study for c in "/\\\n") or not s.study.strip():
        raise LrlabError(f"--study: {s.study!r} is not a usable name")


# -- the search ----------------------------------------------------------------------------------
def _make_sampler(s: TuneSettings, shared: bool) -> Any:
    import optuna

    # one worker replays its study from the seed; several must not propose the same trials
    seed = s.sampler_seed + (os.getpid() if shared else 0)
    if s.sampler == "grid":
        return optuna.samplers.GridSampler(s.space.grid(), seed=seed)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=shared)


def _make_pruner(s: TuneSettings, epochs: int) -> Any:
    import optuna

    if s.pruner == "none":
        return optuna.pruners.NopPruner()
    if s.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    # never judge a trial on its first half: schedules that decay late look bad early
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(epochs // 2, 1))


def _open_study(s: TuneSettings, storage: Any, shared: bool) -> Any:
    import optuna

    config = config_from_dict(dict(s.base), "tune")
    try:
        study = optuna.create_study(storage=storage, study_name=s.study,
                                    direction=s.direction, load_if_exists=True,
                                    sampler=_make_sampler(s, shared),
                                    pruner=_make_pruner(s, config.epochs))
    except Exception as exc:
        raise LrlabError(f"study {s.study!r}: {' '.join(str(exc).split())[:300]}") from None
    have = study.user_attrs.get(_STUDY_ATTR)
    want = s.identity()
    if have is None:
        if study.trials:
            raise LrlabError(f"study {s.study!r} exists and was not made by lrlab tune; "
                             "give another --study name")
        study.set_user_attr(_STUDY_ATTR, want)
    elif have != want:
        diff = [k for k in want if have.get(k) != want[k]]
        raise LrlabError(f"study {s.study!r} was made with another {', '.join(diff)}; "
                         "continue it with the same settings, or give a new --study / --out")
    if study.directions[0].name.lower() != s.direction:
        raise LrlabError(f"study {s.study!r} is {study.directions[0].name.lower()}d, not "
                         f"{s.direction}d")
    return study


def _counts(study: Any) -> Counter:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def _retry_interrupted(study: Any) -> int:
    """Failed trials a Ctrl-C stopped, not yet retried, go back in the queue (once)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("status") == "interrupted" and \
                t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            n += 1
    return n


def _balance(study: Any, s: TuneSettings) -> None:
    """Queue the least-tried value of the balanced key (when nothing else is queued)."""
    from optuna.trial import TrialState

    assert s.balance is not None
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return
    dim = next(d for d in s.space.dims if d.key == s.balance)
    used = Counter(t.params.get(s.balance) for t in trials
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    value = min(dim.choices, key=lambda c: (used.get(c, 0), dim.choices.index(c)))
    study.enqueue_trial({s.balance: value})


def _objective(s: TuneSettings, out: Path, say: Callable[[str], None],
               pruning: bool) -> Callable[[Any], float]:
    import optuna

    from lrlab.lab.train.trainer import train

    summary_key, row_key, _ = METRICS[s.metric]

    def objective(trial: Any) -> float:
        settings = s.space.suggest(trial)
        data = s.space.apply(s.base, settings)
        data.update(out=str(out / "trials"), name=f"{s.study}-t{trial.number:04d}",
                    quiet=True)
        config = config_from_dict(data, f"trial {trial.number}")
        trial.set_user_attr("settings", _jsonable(settings))
        trial.set_user_attr("schedule", config.schedule)
        trial.set_user_attr("run", str(config.run_dir()))
        t0 = time.perf_counter()

        def on_epoch(row: dict[str, Any]) -> bool:
            value = row.get(row_key)
            if not isinstance(value, int | float) or not math.isfinite(value):
                return False
            trial.report(float(value), int(row["epoch"]))
            return pruning and trial.should_prune()

        result = train(config, echo=False, progress=False, on_epoch=on_epoch)
        summ = result.summary
        status = result.status
        trial.set_user_attr("status", status)
        lr = summ.get("lr")
        if isinstance(lr, int | float):
            trial.set_user_attr("lr", float(lr))
        shown = " ".join(f"{k}={_show(v)}" for k, v in settings.items())
        took = time.perf_counter() - t0
        if status == "interrupted":
            say(f"trial {trial.number}: interrupted; the same command retries it")
            raise KeyboardInterrupt
        if status == "pruned":
            say(f"trial {trial.number}: {shown} -> pruned after {summ.get('epochs_done')} "
                f"epochs ({took:.0f} s)")
            raise optuna.TrialPruned()
        if status == "diverged":
            chance = summ.get("chance_acc" if s.metric == "val_acc" else "chance_loss")
            record = summ.get("diverged_at")
            at = Divergence.from_dict(record).update if isinstance(record, dict) else None
            trial.set_user_attr("diverged_at", at)
            say(f"trial {trial.number}: {shown} -> diverged at update {at}; counted at "
                f"chance, {s.metric} {chance:.4f} ({took:.0f} s)")
            return float(chance)
        value = summ.get(summary_key)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise LrlabError(f"trial {trial.number}: the run recorded no {s.metric}")
        say(f"trial {trial.number}: {shown} -> {s.metric} {value:.4f}"
            f"{' (' + status + ')' if status != 'ok' else ''} ({took:.0f} s)")
        return float(value)

    return objective


def _show(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else (repr(v) if isinstance(v, str) and " " in v
                                                     else str(v))


def _search(study: Any, s: TuneSettings, out: Path, say: Callable[[str], None]) -> bool:
    """Take trials until the study has ``trials`` finished or ``timeout`` passed; False
    when interrupted."""
    from optuna.storages import fail_stale_trials

    objective = _objective(s, out, say, s.pruner != "none")
    t0 = time.monotonic()
    while True:
        c = _counts(study)
        finished = c["COMPLETE"] + c["PRUNED"]
        if s.trials is not None and finished >= s.trials:
            return True
        if s.timeout is not None and time.monotonic() - t0 >= s.timeout:
            return True
        if s.trials is not None and finished + c["RUNNING"] >= s.trials and not c["WAITING"]:
            fail_stale_trials(study)  # a dead worker's trial: failed, and queued again
            time.sleep(POLL_S)
            continue
        if s.balance:
            _balance(study, s)
        try:
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False)
        except KeyboardInterrupt:
            return False


# -- the finish ----------------------------------------------------------------------------------
def _best(study: Any, s: TuneSettings) -> dict[str, Any] | None:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE
            and t.user_attrs.get("status") not in ("diverged", None)]
    if not done:
        return None
    pick = max if s.direction == "maximize" else min
    t = pick(done, key=lambda t: (t.value, -t.number) if s.direction == "maximize"
             else (t.value, t.number))
    return {"number": t.number, "value": t.value, "settings": s.space.typed(t.params)}


def _train_command(config: TrainConfig) -> str:
    import shlex

    from lrlab.lab.train.auto_lr import train_flags

    args = ["lrlab", "train", *train_flags(config), "--lr", repr(config.lr), "--schedule",
            config.schedule]
    return " ".join(shlex.quote(a) for a in args)


def _final(s: TuneSettings, best: dict[str, Any], out: Path, jobs: int, echo: bool,
           say: Callable[[str], None]) -> dict[str, Any] | None:
    """Train the winner and the default on fresh seeds; test accuracy with CIs."""
    from lrlab.lab.compare.comparison import compare
    from lrlab.lab.report import stats as st

    tuned = s.space.apply(s.base, best["settings"])
    default = {**s.base, **s.default}
    common = {k: v for k, v in s.base.items() if tuned.get(k) == v and default.get(k) == v}
    doc = {"title": f"{s.title or s.study}: the tuned configuration vs the default",
           "baseline": "default", **common,
           "run": [{"label": "tuned", **{k: v for k, v in tuned.items() if k not in common}},
                   {"label": "default", **{k: v for k, v in default.items()
                                           if k not in common}}]}
    seeds = list(range(1000, 1000 + s.final_seeds))  # not the search's seed
    doc["seeds"] = seeds
    final_dir = out / f"final-t{best['number']:04d}"
    final_dir.mkdir(parents=True, exist_ok=True)
    path = out / f"final-t{best['number']:04d}.toml"
    path.write_text(dump_toml(doc))
    result = compare(file=path, out=final_dir, jobs=jobs, echo=echo, write=say)
    if result.interrupted:
        return None
    from lrlab.lab.report.build import load_runs

    _, runs = load_runs(final_dir)
    by: dict[str, list[Any]] = {"tuned": [], "default": []}
    val: dict[str, list[Any]] = {"tuned": [], "default": []}
    for r in runs:
        if r.label in by:
            by[r.label].append(r.summary.get("final_test_acc") if r.summary else None)
            val[r.label].append(r.summary.get("final_val_acc") if r.summary else None)
    t, d = st.summarize(by["tuned"]), st.summarize(by["default"])
    c = st.welch(by["tuned"], by["default"])
    return {"seeds": seeds, "tuned": by["tuned"], "default": by["default"],
            "tuned_val": val["tuned"], "default_val": val["default"],
            "tuned_summary": t, "default_summary": d, "contrast": c,
            "report": str(result.report.html) if result.report else None}


# -- the entry point -------------------------------------------------------------------------------
def tune(settings: TuneSettings, *, out: str | Path | None = None, storage: str | None = None,
         heartbeat: int = 30, jobs: int = 1, echo: bool = True,
         write: Callable[[str], None] | None = None) -> TuneResult:
    """Run one worker of the study ``settings`` describes; see the module docstring.

    ``out`` (default ``tune/STUDY``) holds the trials' run directories, the default SQLite
    storage, ``best.toml``, the final comparison and the report. ``storage`` is an Optuna
    URL shared by every worker (see :func:`lrlab.lab.tune.storage.open_storage`);
    ``heartbeat`` its liveness interval in seconds. ``jobs`` applies to the final retraining.
    Raises LrlabError for a storage that cannot be opened or a study made with other
    settings, before any trial starts. Every input (the heartbeat, the storage URL's form, the
    directories it names) is checked before ``out`` is looked at, and ``out`` is checked
    (a user's files, a study of another storage) before anything is opened or written.
    """
    from lrlab.lab.compare.runner import sigterm_as_interrupt
    from lrlab.lab.tune.report import write_tune_report

    say = write or print
    if not echo:
        say = _silent
    out_dir = Path(out) if out is not None else Path("tune") / settings.study
    check_storage(storage, heartbeat)
    _check_out(out_dir, storage)
    quiet_optuna()
    store, label = open_storage(storage, out_dir, heartbeat)
    shared = storage is not None
    study = _open_study(settings, store, shared)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / MARKER
    if not marker.exists():
        write_json_atomic(marker, {"tool": "lrlab tune", "study": settings.study,
                                   "storage": label})
    result = TuneResult(out_dir, settings.study, label)
    again = _retry_interrupted(study)
    c = _counts(study)
    done = c["COMPLETE"] + c["PRUNED"]
    budget = (f"{settings.trials} finished trials" if settings.trials is not None else "") + \
        (" or " if settings.trials is not None and settings.timeout else "") + \
        (f"{settings.timeout:g} s" if settings.timeout else "")
    say(f"study {settings.study!r} in {label}: {done} trials finished"
        f"{f', {again} interrupted ones queued again' if again else ''}; budget {budget}; "
        f"objective {settings.metric} on the validation split")
    with sigterm_as_interrupt():
        try:
            completed = _search(study, settings, out_dir, say)
        except KeyboardInterrupt:
            completed = False
    c = _counts(study)
    result.finished = c["COMPLETE"] + c["PRUNED"]
    result.best = _best(study, settings)
    if not completed:
        result.interrupted = True
        return result
    if result.best is not None:
        tuned = settings.space.apply(settings.base, result.best["settings"])
        (out_dir / "best.toml").write_text(
            f"# best of study {settings.study!r}: trial {result.best['number']}, "
            f"{settings.metric} {result.best['value']:.4f} on the validation split\n"
            + dump_toml(tuned))
        result.command = _train_command(config_from_dict(tuned, "best"))
        if settings.final_seeds > 0:
            with sigterm_as_interrupt():
                try:
                    result.final = _final(settings, result.best, out_dir, jobs, echo, say)
                except KeyboardInterrupt:
                    result.final = None
            if result.final is None:
                result.interrupted = True
    result.report = write_tune_report(study, settings, out_dir, label, result.final,
                                      result.best)
    return result


#: the file that marks a directory as an ``lrlab tune`` output directory
MARKER = "tune.json"


def _check_out(out: Path, storage: str | None = None) -> None:
    """``out`` is new, empty, or ours (it has the marker): never write into a user's files.
    Ours, it must be the study's in the storage it was made with (``storage``: the URL given,
    None for ``out/study.db``): a new study elsewhere would collide with its trials' runs."""
    if out.exists() and not out.is_dir():
        raise LrlabError(f"--out {out} is a file, not a directory")
    if not out.is_dir():
        return
    marker = out / MARKER
    if not marker.is_file():
        if any(out.iterdir()):
            raise LrlabError(f"--out {out} holds files lrlab tune did not write; give a new or "
                             "empty directory")
        return
    try:
        made = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return  # an unreadable marker records no storage: opening the study says the rest
    recorded = made.get("storage") if isinstance(made, dict) else None
    if not isinstance(recorded, str) or not recorded or _same_storage(recorded, storage, out):
        return
    given = storage_label(storage) if storage is not None else f"{out / 'study.db'} (the default)"
    how = "without --storage" if _own_database(recorded, out) else \
        "with the --storage it was made with"
    raise LrlabError(f"--out {out} holds study {str(made.get('study'))!r} of the storage "
                     f"{recorded}, not of {given}: continue it there ({how}), or give a new "
                     "--out")


def _own_database(recorded: str, out: Path) -> bool:
    """``recorded`` is the default ``study.db`` of a tune directory and ``out`` has its own
    (the directory was moved or copied: its study lives on in ``out/study.db``)."""
    found = storage_file(recorded)
    return found is not None and found[0] == "sqlite" and found[1].name == "study.db" and \
        (out / "study.db").is_file()


def _same_storage(recorded: str, storage: str | None, out: Path) -> bool:
    """Whether the storage the marker of ``out`` records is the one ``storage`` names."""
    default = f"sqlite:///{(out / 'study.db').resolve()}"
    now = storage if storage is not None else default
    if storage_label(now) == recorded:
        return True
    found, wanted = storage_file(recorded), storage_file(now)
    if found is None or wanted is None:
        return False  # database servers: the same URL (its password hidden) or not
    return found == wanted or (wanted == storage_file(default) and
                               _own_database(recorded, out))


def run(*, preset: str | None = None, file: str | Path | None = None,
        space: Sequence[str] | Mapping[str, Any] | None = None,
        train: Mapping[str, Any] | None = None, out: str | Path | None = None,
        storage: str | None = None, study: str | None = None, trials: int | None = None,
        timeout: float | None = None, sampler: str | None = None, pruner: str | None = None,
        metric: str | None = None, final_seeds: int | None = None, balance: str | None = None,
        sampler_seed: int = 0, heartbeat: int = 30, jobs: int = 1,
        echo: bool = True) -> TuneResult:
    """``lrlab.tune(...)``: :func:`settings_from` and :func:`tune` in one call, as the
    command line does; ``train`` holds the base ``lrlab train`` settings (TrainConfig keys).

    Example::

        lrlab.tune(train={"dataset": "fashion-mnist", "model": "lenet", "epochs": 3},
                   space=["lr=log(1e-3, 1e-1)", "weight_decay=log(1e-3, 1)"], trials=20)
    """
    settings = settings_from(preset=preset, file=file, space=space, overrides=train,
                             study=study, trials=trials, timeout=timeout, sampler=sampler,
                             pruner=pruner, metric=metric, final_seeds=final_seeds,
                             balance=balance, sampler_seed=sampler_seed)
    return tune(settings, out=out, storage=storage, heartbeat=heartbeat, jobs=jobs, echo=echo)


def _silent(_: str) -> None:
    pass
