"""Command line: thin argument parsing; every command calls one library function.

A user error (``LrlabError``, a bad flag, an unreadable file) is one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lrlab.errors import LrlabError

if TYPE_CHECKING:
    from lrlab.lab.train.config import TrainConfig

Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# -- lrlab schedule ---------------------------------------------------------------------------
def _add_schedule(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule",
        help="print (and plot) the LR of a schedule spec per update or per epoch",
        description="Print the LR a schedule gives per update (or per epoch), as a table, csv or "
        "json, with a terminal sparkline; --plot writes a PNG, --compare overlays more specs. "
        'Example: lrlab schedule "warmup(5) >> cosine(end=0.01)" --lr 0.5 --steps 20',
    )
    p.add_argument("spec", help='schedule spec, e.g. "warmup(5%%) >> cosine(end=0.01)"')
    p.add_argument("--lr", type=_finite_float, default=1.0, help="peak LR (default 1: multipliers)")
    p.add_argument("--steps", type=_positive_int, help="total optimizer updates")
    p.add_argument("--epochs", type=_positive_int, help="total epochs (with --steps-per-epoch)")
    p.add_argument("--steps-per-epoch", type=_positive_int, help="updates per epoch")
    p.add_argument("--per", choices=["step", "epoch"], default="step",
                   help="step the schedule per update (default) or per epoch")
    p.add_argument("--beta2", type=_finite_float, help="optimizer beta2 for warmup(auto)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--every", type=_positive_int, default=1, help="print every N-th row")
    p.add_argument("--plot", metavar="FILE.png", help="write a plot of the curve(s)")
    p.add_argument("--compare", nargs="+", default=[], metavar="SPEC",
                   help="more specs to overlay")
    p.add_argument("--no-curve", action="store_true", help="no terminal sparkline")
    p.set_defaults(func=_cmd_schedule)


def _cmd_schedule(args: argparse.Namespace) -> int:
    from lrlab.schedule_view import build_view, format_view, plot_view, terminal_curves

    view = build_view([args.spec, *args.compare], lr=args.lr, steps=args.steps,
                      epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, per=args.per,
                      beta2=args.beta2)
    print(format_view(view, args.format, args.every))
    if args.format == "table" and not args.no_curve:
        print()
        print(terminal_curves(view))
    if args.plot:
        path = plot_view(view, args.plot)
        print(f"plot written to {path}", file=sys.stderr if args.format != "table" else sys.stdout)
    return 0


# -- lrlab train ------------------------------------------------------------------------------
def _betas(text: str) -> tuple[float, float]:
    parts = text.replace(",", " ").split()
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.999, got {text!r}") \
            from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.999, got {text!r}")
    return values  # type: ignore[return-value]


def _lr_mult(text: str) -> tuple[str, float]:
    pattern, sep, mult = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(f"expected PATTERN=MULT, got {text!r}")
    return pattern, _finite_float(mult)


def _lr(text: str) -> float | str:
    return "auto" if text == "auto" else _finite_float(text)


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """The flags of one run, shared by ``train`` and ``find-lr``; defaults come from TrainConfig."""
    _data_and_model_flags(p)
    _optimizer_and_schedule_flags(p)
    _training_flags(p)
    _execution_flags(p)
    p.add_argument("--config", metavar="FILE.toml", help="read settings from TOML (flags win)")


def _data_and_model_flags(p: argparse.ArgumentParser) -> None:
    """The dataset, its preprocessing, and the model."""
    S = argparse.SUPPRESS
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default=S,
                   help="fashion-mnist (default), mnist, classification, blobs, modadd "
                   "(modular addition), chars (character LM on Python's help topics)")
    g.add_argument("--data-dir", default=S, help="directory with the IDX files")
    g.add_argument("--limit", type=_positive_int, default=S,
                   help="use the first N training examples")
    g.add_argument("--val-size", type=_non_negative_int, default=S, metavar="N",
                   help="examples held out of the training set for validation (default: "
                   "10000 of Fashion-MNIST/MNIST's 60000, 200 of blobs; 0: none)")
    g.add_argument("--pixels", choices=["standard", "unit"], default=S,
                   help="image preprocessing: standardised (default) or pixels/255 only")
    g.add_argument("--model", default=S,
                   help="lenet, mlp or transformer (default: by dataset)")
    g.add_argument("--hidden", default=S, help="MLP hidden sizes, e.g. 100-50")
    g.add_argument("--norm", choices=["pre", "post"], default=S,
                   help="transformer: Pre-LN (default) or Post-LN blocks")
    g.add_argument("--depth", type=_positive_int, default=S, help="transformer blocks (4)")
    g.add_argument("--width", type=_positive_int, default=S, help="transformer width (128)")
    g.add_argument("--heads", type=_positive_int, default=S,
                   help="transformer attention heads, dividing --width (4)")
    g.add_argument("--context", type=_positive_int, default=S,
                   help="chars: window length in characters, the transformer's context (64)")


def _optimizer_and_schedule_flags(p: argparse.ArgumentParser) -> None:
    """The optimizer, its hyper-parameters and parameter groups, and the LR schedule."""
    S = argparse.SUPPRESS
    g = p.add_argument_group("optimizer and schedule")
    g.add_argument("--optimizer", default=S, help="sgd, momentum, nesterov, rmsprop, adam, adamw "
                   "(default), amsgrad, lion, adam-nobias, nsgd, adamw-schedulefree, "
                   "sgd-schedulefree (keep the default constant() schedule), muon, prodigy "
                   "(--lr 1: a multiplier of its estimated step size)")
    g.add_argument("--lr", type=_lr, default=S, help="peak LR, or 'auto' (LR range test first)")
    g.add_argument("--weight-decay", type=_finite_float, default=S)
    g.add_argument("--betas", type=_betas, default=S, help="e.g. 0.9,0.999")
    g.add_argument("--momentum", type=_finite_float, default=S)
    g.add_argument("--eps", type=_finite_float, default=S)
    g.add_argument("--no-decay", action="append", default=S, metavar="PATTERN",
                   help="no weight decay on parameters matching this name pattern (repeatable; "
                   "biases and norm layers never decay)")
    g.add_argument("--lr-mult", action="append", type=_lr_mult, default=S,
                   metavar="PATTERN=MULT", help="LR multiplier for matching parameters, e.g. "
                   "'fc*=0.1' (repeatable)")
    g.add_argument("--layer-decay", type=_finite_float, default=S,
                   help="layer-wise LR decay (BEiT): layer i of L gets decay^(L-i)")
    g.add_argument("--schedule", default=S, help='spec, e.g. "warmup(1ep) >> cosine()"')
    g.add_argument("--per", choices=["step", "epoch"], default=S,
                   help="step the schedule per update (default) or per epoch")


def _training_flags(p: argparse.ArgumentParser) -> None:
    """The training budget, batches, seed and numerics."""
    S = argparse.SUPPRESS
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, default=S)
    g.add_argument("--batch-size", type=_positive_int, default=S, help="per-rank batch")
    g.add_argument("--accumulate", type=_positive_int, default=S,
                   help="gradient-accumulation steps per update")
    g.add_argument("--scale-lr", choices=["none", "linear", "sqrt"], default=S,
                   help="scale --lr from --ref-batch to the global batch")
    g.add_argument("--ref-batch", type=_positive_int, default=S)
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--amp", choices=["auto", "bf16", "off"], default=S,
                   help="bf16 autocast (auto: on CUDA only)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S,
                   help="channels-last memory format (default: on for LeNet on the CPU)")


def _execution_flags(p: argparse.ArgumentParser) -> None:
    """Where the run goes, the device, and what is recorded."""
    S = argparse.SUPPRESS
    g = p.add_argument_group("execution")
    g.add_argument("--out", default=S, help="parent directory of runs (default runs)")
    g.add_argument("--name", default=S, help="run directory name (default: derived)")
    g.add_argument("--device", default=S, help="auto (default), cpu, cuda, cuda:N, mps")
    g.add_argument("--compile", action="store_true", default=S, help="torch.compile the model")
    g.add_argument("--threads", type=_positive_int, default=S, help="torch CPU threads")
    g.add_argument("--update-ratio", action="store_true", default=S,
                   help="record per-layer update/weight ratios")
    g.add_argument("--sharpness", type=int, default=S, metavar="EVERY",
                   help="after every EVERY-th epoch (and the last) record the top Hessian "
                   "eigenvalue on a fixed batch (the first --batch-size training examples; "
                   "for Adam-like optimizers also the preconditioned one) beside the "
                   "stability threshold of the LR; up to 100 Hessian-vector products each "
                   "(default 0: off)")
    g.add_argument("--quiet", action="store_true", default=S, help="no progress output")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from lrlab.lab.train.config import TrainConfig, config_from_dict, load_toml

    data: dict = {}
    if getattr(args, "config", None):
        data.update(load_toml(args.config))
    names = {f for f in TrainConfig.__dataclass_fields__}
    for key, value in vars(args).items():
        if key in names:
            data[key] = dict(value) if key == "lr_mult" else value
    return config_from_dict(data, source=getattr(args, "config", None) or "flags")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run and record it",
                       description="Train a model with an optimizer and a schedule; the run is "
                       "recorded in OUT/NAME (config.json, metrics.jsonl, checkpoint.pt, "
                       "summary.json).")
    add_train_flags(p)
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue an interrupted run (this config's, or RUN_DIR's); with "
                   "RUN_DIR only --epochs (to extend it: the schedule is resolved again over "
                   "the new length) and execution flags (--quiet, --device, --threads, "
                   "--compile, --update-ratio, --sharpness, --data-dir) may be given")
    p.set_defaults(func=_cmd_train)


#: Flags a ``--resume RUN_DIR`` honours: how the run executes, and --epochs (which extends
#: or shortens what is left of it). Every other flag would change the run's numbers.
RESUME_FLAGS = ("quiet", "device", "threads", "compile", "update_ratio", "sharpness", "data_dir",
                "epochs")


def _resume_config(args: argparse.Namespace) -> TrainConfig:
    from lrlab.lab.train.config import TrainConfig, config_of_run

    config = config_of_run(args.resume)
    given = [k for k in vars(args) if k in TrainConfig.__dataclass_fields__]
    if args.config:
        raise LrlabError("--resume RUN_DIR continues the run as recorded in its config.json; "
                         "--config does not apply")
    for key in given:
        if key in ("out", "name"):
            raise LrlabError(f"--{key} does not apply to --resume RUN_DIR (the directory is "
                             "the run)")
        value = getattr(args, key)
        if key not in RESUME_FLAGS:
            flag = "--" + key.replace("_", "-")
            raise LrlabError(f"{flag} cannot change on resume: {args.resume} was trained with "
                             f"{key.replace('_', '-')} = {getattr(config, key)!r}; start a new "
                             "run with --name (or --out) instead")
        setattr(config, key, value)
    return config.validate()


def _cmd_train(args: argparse.Namespace) -> int:
    from lrlab.lab.train.trainer import train

    if isinstance(args.resume, str):
        config = _resume_config(args)
    else:
        config = config_from_args(args)
        if args.resume and not config.run_dir().joinpath("config.json").exists():
            raise LrlabError(f"--resume: no run to continue at {config.run_dir()} (these "
                             "settings name that directory); drop --resume to start it, or "
                             "give the run directory: --resume RUN_DIR")
    result = train(config, resume=bool(args.resume))
    if not result.main:  # under torchrun rank 0 alone reports, as it alone writes the records
        return 130 if result.status == "interrupted" else 0
    s = result.summary
    acc = s.get("final_test_acc")
    val = s.get("final_val_acc")
    line = f"{result.status}: "
    if acc is None:
        line += "no epoch done"
    else:  # final numbers only: a "best epoch" picked on the test set would flatter the run
        line += (f"final val acc {val:.4f}, " if val is not None else "") + \
            f"final test acc {acc:.4f}"
        if s.get("final_test_bpc") is not None:  # bits per character (chars)
            vb = s.get("final_val_bpc")
            line += (f", final val bpc {vb:.4f}" if vb is not None else "") + \
                f", final test bpc {s['final_test_bpc']:.4f}"
    if s.get("time_s") is not None:
        line += f", {s['time_s']:.1f}s"
    if s.get("examples_per_s"):
        line += f", {s['examples_per_s']:.0f} ex/s"
    if result.status == "diverged" and s.get("diverged_at"):
        d = s["diverged_at"]
        line += f"; diverged at update {d['update']} with lr {d['lr']:.4g}"
    print(line)
    print(f"run: {result.path}")
    if result.status == "interrupted":
        print(f"continue with: lrlab train --resume {result.path}")
        return 130
    return 0


# -- lrlab find-lr ----------------------------------------------------------------------------
def _add_find_lr(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "find-lr", help="LR range test: which learning rates train, and which to use",
        description="Run an LR range test (Smith 2017) on the run the flags describe: the LR "
        "grows from --start to --end over --steps mini-batches while the loss is recorded. "
        "Prints the suggested LRs with their reasons, writes a plot and prints the "
        "'lrlab train' line that uses the chosen LR. The model is built as 'lrlab train' "
        "would build it; nothing is trained or recorded. When the dataset has a validation "
        "split (--val-size, on by default) the suggestions are read on the validation loss of "
        "1,024 of its examples, evaluated after every update (2.4-2.8x the time of a test on "
        "the training loss for LeNet); otherwise on the training loss. "
        "Exit status: 0 with a suggested LR, 1 when nothing trained (no LR is suggested), "
        "2 on an error.")
    add_train_flags(p)
    refused = {"lr": "refused here: the range test finds the LR (give it to lrlab train)",
               "compile": "refused here: the range test runs eagerly (compiling costs more "
               "than its 100 updates take); give --compile to lrlab train",
               "update_ratio": "refused here: the range test records no update ratios; give "
               "--update-ratio to lrlab train",
               "sharpness": "refused here: the range test records no sharpness; give "
               "--sharpness to lrlab train",
               "quiet": "print only the chosen LR (or why there is none) and the train line"}
    for action in p._actions:
        if action.dest in refused:
            action.help = refused[action.dest]
    g = p.add_argument_group("range test")
    g.add_argument("--start", type=_finite_float, default=1e-7, help="first LR (default 1e-7)")
    g.add_argument("--end", type=_finite_float, default=10.0, help="last LR (default 10)")
    g.add_argument("--steps", type=_positive_int, default=100,
                   help="mini-batches in the ramp (default 100)")
    g.add_argument("--mode", choices=["exp", "linear"], default="exp",
                   help="geometric (default) or linear ramp")
    g.add_argument("--choose", choices=["steepest", "valley", "minimum"],
                   help="the suggestion to use (default: minimum, the LR at the minimum of the "
                   "smoothed loss, the peak the printed schedule warms up to; valley and "
                   "steepest are lower, cautious picks)")
    g.add_argument("--plot", metavar="FILE.png",
                   help="plot path (default OUT/find-lr-DATASET-MODEL-OPTIMIZER.png)")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_find_lr)


def _cmd_find_lr(args: argparse.Namespace) -> int:
    import json

    from lrlab.lab.train.auto_lr import default_plot_path, run_find_lr

    if "lr" in vars(args):
        raise LrlabError("--lr: the range test finds the LR; drop --lr here and give it to "
                         "lrlab train")
    config = config_from_args(args)
    for name, flag in (("compile", "--compile"), ("update_ratio", "--update-ratio"),
                       ("sharpness", "--sharpness")):
        if getattr(config, name):
            raise LrlabError(f"{flag} (or '{name}' in --config) does not apply to the range "
                             f"test, which runs eagerly and records no update ratios or "
                             f"sharpness; give {flag} to lrlab train")
    plot = args.plot or default_plot_path(config)
    result, command = run_find_lr(config, start=args.start, end=args.end, steps=args.steps,
                                  mode=args.mode, choose=args.choose, plot_path=plot)
    status = 0 if command is not None else 1
    if args.json:
        data = result.to_dict()
        data["command"] = command
        print(json.dumps(data, indent=2, default=str))
        return status
    lines = result.summary_lines()
    if config.quiet:
        print(lines[-1])
        if command is not None:
            print(command.splitlines()[0])
        return status
    s = result.settings
    read_on = (f"validation loss of {s['val_examples']} examples" if s.get("val_examples")
               else "training loss")
    print(f"LR range test: {config.optimizer} on {config.dataset} ({config.resolved_model()}), "
          f"{s['steps_run']} updates of {s['batch']} examples = "
          f"{s['epochs_equivalent']:.2f} epochs, lr {args.start:g} -> {args.end:g} "
          f"({args.mode}), read on the {read_on}")
    for line in lines:
        print(line)
    print(f"plot: {s['plot']}")
    if command is not None:
        print("train with:")
        for line in command.splitlines():
            print(f"  {line}")
    return status


# -- lrlab compare / lrlab report -------------------------------------------------------------
def _add_compare(sub: argparse._SubParsersAction) -> None:
    from lrlab.lab.compare.presets import PRESETS

    p = sub.add_parser(
        "compare", help="train a grid of runs side by side and write a report",
        description="Train runs side by side -- a preset, the [[run]] tables of a TOML file, "
        "and/or --grid KEY=V1,V2 over any 'lrlab train' option -- each with --seeds, in --jobs "
        "worker processes, then write report.md, report.html (self-contained) and summary.csv "
        "into --out. Train flags given here apply to every run. Running it again skips "
        "finished runs and resumes interrupted ones. Presets: " + ", ".join(PRESETS) + ". "
        'Example: lrlab compare --grid optimizer=sgd,adam --grid "schedule=constant();cosine()"'
        " --dataset blobs --epochs 5")
    p.add_argument("file", nargs="?", metavar="FILE.toml",
                   help="runs to compare: top-level common settings, [[run]] tables with a "
                   "label, optional [grid] table of lists")
    p.add_argument("--preset", help="a named experiment: " + ", ".join(PRESETS))
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="vary a train option; values split on commas outside brackets, or on "
                   "';' (repeat for a product grid)")
    p.add_argument("--seeds", metavar="S1,S2", help="seeds of every run, e.g. 0,1,2")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="parallel worker processes (they share the cores)")
    p.add_argument("--vectorize", choices=("auto", "on", "off"), default="auto",
                   help="train runs that share data, model, batch size and epochs together "
                   "as one stack of parameters in one process (auto: where they can, the "
                   "rest in their own processes; on: refuse runs that cannot; off: every run "
                   "in its own process)")
    p.add_argument("--nproc-per-run", type=_positive_int, default=1, metavar="N",
                   help="launch each run under torchrun with N data-parallel ranks")
    p.add_argument("--trace", metavar="LABEL",
                   help="label of the run shown epoch by epoch in the report")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--force", action="store_true",
                   help="replace the plan of another comparison already in --out (its runs "
                   "stay on disk)")
    add_train_flags(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from lrlab.lab.compare.comparison import compare
    from lrlab.lab.train.config import TrainConfig

    if args.list:
        from lrlab.lab.compare.presets import PRESETS

        for p in PRESETS.values():
            print(f"{p.name:<24} {p.title} [{len(p.rows)} rows, {p.epochs} epochs, seeds "
                  f"{','.join(map(str, p.seeds))}]")
        return 0
    if "name" in vars(args):
        raise LrlabError("--name does not apply to a comparison (runs are named after their "
                         "labels); use --out DIR")
    if args.file and args.config:
        raise LrlabError("give the TOML file once (FILE.toml or --config)")
    fields = set(TrainConfig.__dataclass_fields__) - {"out", "epochs", "quiet", "name"}
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.replace(";", ",").split(",") if s.strip()]
        except ValueError:
            raise LrlabError(f"--seeds: expected integers like 0,1,2, got {args.seeds!r}") \
                from None
    result = compare(preset=args.preset, file=args.file or args.config, grid=args.grid,
                     seeds=seeds, epochs=getattr(args, "epochs", None), overrides=overrides,
                     out=getattr(args, "out", None), jobs=args.jobs,
                     nproc_per_run=args.nproc_per_run, force=args.force, trace=args.trace,
                     echo=not getattr(args, "quiet", False), vectorize=args.vectorize)
    if result.interrupted:
        print(f"lrlab compare: interrupted; run the same command again to resume "
              f"({result.plan.out})", file=sys.stderr)
        return 130
    files = result.report
    assert files is not None
    for line in files.headline:
        print(line)
    print(f"report: {files.html}\n        {files.markdown}\ntable:  {files.csv}")
    return 1 if result.failed else 0


def _add_tune(sub: argparse._SubParsersAction) -> None:
    from lrlab.lab.tune.presets import TUNE_PRESETS
    from lrlab.lab.tune.tuner import METRICS, PRUNERS, SAMPLERS

    p = sub.add_parser(
        "tune", help="search LR, schedule and other settings with Optuna (validation split)",
        description="Search any 'lrlab train' setting with Optuna: each trial is a run, its "
        "objective the final validation accuracy (or loss); the test set is read only when "
        "the winner and the default are retrained on --final-seeds fresh seeds at the end. "
        "The study lives in OUT/study.db (run the same command again to continue it) or in "
        "--storage, shared by every worker started with the same command. Presets: "
        + ", ".join(TUNE_PRESETS) + ". Example: lrlab tune --dataset blobs --epochs 5 "
        "--space 'lr=log(1e-3,1)' --space \"schedule=choice('cosine()','constant()')\" "
        "--trials 10")
    p.add_argument("file", nargs="?", metavar="FILE.toml",
                   help="base settings at the top level, a [space] table, and optional "
                   "trials, timeout, sampler, pruner, metric, final_seeds, balance, study, "
                   "[default]")
    p.add_argument("--preset", help="a tuning study: " + ", ".join(TUNE_PRESETS))
    p.add_argument("--space", action="append", default=[], metavar="KEY=DIST",
                   help="a dimension: log(lo,hi), float(lo,hi), int(lo,hi) or choice(a,b,...); "
                   "warmup=int(lo,hi)ep puts a warmup in front of the schedule (repeat)")
    p.add_argument("--trials", type=_positive_int,
                   help="finished trials the study should have, over all workers")
    p.add_argument("--timeout", type=_finite_float, metavar="SECONDS",
                   help="this worker takes no new trial after SECONDS")
    p.add_argument("--sampler", choices=SAMPLERS, help="tpe (default), random or grid")
    p.add_argument("--pruner", choices=PRUNERS,
                   help="median (default; not before half the epochs), hyperband or none")
    p.add_argument("--no-prune", action="store_true", help="same as --pruner none")
    p.add_argument("--metric", choices=list(METRICS), help="objective on the validation "
                   "split: val_acc (default, maximised) or val_loss (minimised)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage shared by the workers: "
                   "sqlite:///PATH, postgresql://USER@HOST:PORT/DB, mysql://... or "
                   "journal:PATH (default: OUT/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the preset's, or "
                   "'study')")
    p.add_argument("--final-seeds", type=_non_negative_int, metavar="K",
                   help="retrain the winner and the default on K fresh seeds and report "
                   "test accuracy (default 3; 0 for extra workers)")
    p.add_argument("--balance", metavar="KEY", help="give every value of this choice(...) "
                   "key the same number of trials (equal budget per family)")
    p.add_argument("--sampler-seed", type=int, default=0,
                   help="seed of the sampler (a shared study adds each worker's pid)")
    p.add_argument("--heartbeat", type=_positive_int, default=30, metavar="SECONDS",
                   help="a running trial's liveness interval; a trial silent for 3x this is "
                   "failed and retried (default 30)")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="worker processes for the final retraining")
    p.add_argument("--list", action="store_true", help="list the tuning presets and exit")
    add_train_flags(p)
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> int:
    from lrlab.lab.train.config import TrainConfig
    from lrlab.lab.tune.tuner import settings_from, tune

    if args.list:
        from lrlab.lab.tune.presets import TUNE_PRESETS

        for p in TUNE_PRESETS.values():
            print(f"{p.name:<12} {p.title} [{p.trials} trials]")
        return 0
    if "name" in vars(args):
        raise LrlabError("--name does not apply to a study (trials are named after their "
                         "numbers); use --out DIR or --study NAME")
    if args.file and args.config:
        raise LrlabError("give the TOML file once (FILE.toml or --config)")
    if args.no_prune and args.pruner not in (None, "none"):
        raise LrlabError(f"--no-prune contradicts --pruner {args.pruner}")
    fields = set(TrainConfig.__dataclass_fields__) - {"out", "quiet", "name"}
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    if "lr_mult" in overrides:
        overrides["lr_mult"] = dict(overrides["lr_mult"])
    settings = settings_from(preset=args.preset, file=args.file or args.config,
                             space=args.space or None, overrides=overrides, study=args.study,
                             trials=args.trials, timeout=args.timeout, sampler=args.sampler,
                             pruner="none" if args.no_prune else args.pruner,
                             metric=args.metric, final_seeds=args.final_seeds,
                             balance=args.balance, sampler_seed=args.sampler_seed)
    result = tune(settings, out=getattr(args, "out", None), storage=args.storage,
                  heartbeat=args.heartbeat, jobs=args.jobs,
                  echo=not getattr(args, "quiet", False))
    if result.interrupted:
        print(f"lrlab tune: interrupted after {result.finished} finished trials; run the "
              f"same command again to continue the study ({result.out})", file=sys.stderr)
        return 130
    if result.best is not None:
        print(f"best: trial {result.best['number']}, {settings.metric} "
              f"{result.best['value']:.4f} (validation)")
        print(f"  {result.command}\n  settings: {result.out / 'best.toml'}")
    else:
        print("no trial completed without diverging: no best configuration")
    if result.report is not None:
        print(f"report: {result.report}\n        {result.report.with_suffix('.md')}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="(re)write the report of a comparison or of one run",
        description="Recompute the report of DIR from its run records alone: report.md, a "
        "self-contained report.html, the PNG figures and summary.csv, written into DIR. DIR "
        "is a comparison directory ('lrlab compare --out') or a single run directory.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--trace", metavar="LABEL",
                   help="label (or run name) shown epoch by epoch (default: the first run "
                   "with a warmup)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from lrlab.lab.report.build import write_report

    files = write_report(args.dir, trace=args.trace)
    for line in files.headline:
        print(line)
    print(f"report: {files.html}\n        {files.markdown}\ntable:  {files.csv}")
    return 0


_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_schedule, _add_train,
                                                                   _add_find_lr, _add_compare,
                                                                   _add_tune, _add_report]


def build_parser() -> argparse.ArgumentParser:
    from lrlab import __version__

    parser = _Parser(prog="lrlab", description="Learning-rate schedules, optimizers and a lab "
                     "that trains, compares and plots them.")
    parser.add_argument("--version", action="version", version=f"lrlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LrlabError as exc:
        message = " ".join(str(exc).split())
        print(f"lrlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"lrlab {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lrlab {args.command}: interrupted", file=sys.stderr)
        return 130
