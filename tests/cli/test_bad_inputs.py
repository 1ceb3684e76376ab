"""The corpus of bad and edge inputs: every one is honoured or refused with one line on stderr
and exit code 2, never a traceback, and nothing already written is changed.

Each case is a row of ``CASES``: a name, how to set up its directory, the command line, the
expected exit code and a word the message must contain. Commands run in-process through
``lrlab.cli.main`` (an uncaught exception fails the test as a traceback would), against a
small finished blobs run that every case gets a fresh copy of.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from lrlab.cli import main
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.trainer import train

BLOBS = ["--dataset", "blobs", "--epochs", "1", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base")
    train(TrainConfig(dataset="blobs", epochs=2, out=str(out), name="run", quiet=True,
                      threads=1))
    cmp = out / "cmp"
    assert main(["compare", "--grid", "lr=0.01,0.02", "--out", str(cmp), *BLOBS]) == 0
    return out


@dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    code: int
    needle: str
    setup: Callable[[Path], None] = lambda d: None
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[Path], None] = lambda d: None


def _write(rel: str, text: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return setup


def _interrupted(d: Path) -> None:
    s = json.loads((d / "run" / "summary.json").read_text())
    s["status"] = "interrupted"
    (d / "run" / "summary.json").write_text(json.dumps(s))


def _toml(body: str) -> Callable[[Path], None]:
    return _write("c.toml", 'dataset = "blobs"\nepochs = 1\n' + body + "\n")


def _foreign_dir(d: Path) -> None:
    (d / "theirs").mkdir()
    (d / "theirs" / "checkpoint.pt").write_bytes(b"another tool's weights")
    (d / "theirs" / "metrics.jsonl").write_text("theirs\n")


def _untouched(d: Path) -> None:
    assert (d / "theirs" / "checkpoint.pt").read_bytes() == b"another tool's weights"
    assert (d / "theirs" / "metrics.jsonl").read_text() == "theirs\n"
    assert not (d / "theirs" / "config.json").exists()


def _rename(d: Path) -> None:
    (d / "run").rename(d / "base copy (2) é")
    s = json.loads((d / "base copy (2) é" / "summary.json").read_text())
    s["status"] = "interrupted"
    (d / "base copy (2) é" / "summary.json").write_text(json.dumps(s))


def _metrics_row(d: Path, row: str) -> None:
    path = d / "run" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = row
    path.write_text("\n".join(lines) + "\n")


TUNE = [*BLOBS, "--space", "lr=log(1e-3, 1e-1)", "--trials", "1", "--final-seeds", "0"]


def _corrupt_study(d: Path) -> None:
    (d / "t").mkdir()
    (d / "t" / "tune.json").write_text('{"tool": "lrlab tune"}')
    (d / "t" / "study.db").write_bytes(b"not a database\n" * 64)


def _crafted_idx(d: Path) -> None:
    from tests.idx_fixtures import write_mnist_dir

    write_mnist_dir(d / "idx", n_train=12, n_test=4)
    dims = (2**22, 2**21, 2**21)  # 2**64 bytes: wraps to 0 in int64
    header = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in dims)
    (d / "idx" / "train-images-idx3-ubyte").write_bytes(header)


CASES = [
    # -- §2 never overwrite what lrlab did not write ----------------------------------------
    Case("foreign run dir", lambda d: ["train", *BLOBS, "--out", str(d), "--name", "theirs"],
         2, "not an lrlab run", setup=_foreign_dir, check=_untouched),
    Case("name dotdot", lambda d: ["train", *BLOBS, "--out", str(d), "--name", ".."], 2,
         "directory name"),
    Case("name with slash", lambda d: ["train", *BLOBS, "--out", str(d), "--name", "a/b"], 2,
         "directory name"),
    Case("compare into a user's dir", lambda d: ["compare", "--grid", "lr=0.01", "--out",
                                                  str(d / "mine"), *BLOBS],
         2, "did not write", setup=_write("mine/report.md", "my notes\n"),
         check=lambda d: (d / "mine" / "report.md").read_text() == "my notes\n"),
    Case("another comparison into the same out",
         lambda d: ["compare", "--grid", "lr=0.05", "--out", str(d / "cmp"), *BLOBS], 2,
         "another comparison"),
    Case("the same comparison again", lambda d: ["compare", "--grid", "lr=0.01,0.02", "--out",
                                                 str(d / "cmp"), *BLOBS], 0, ""),
    Case("resume a renamed run", lambda d: ["train", "--resume", str(d / "base copy (2) é"),
                                            "--quiet"], 0, "", setup=_rename),
    # -- §3 records validated at the door -----------------------------------------------------
    Case("checkpoint holds {}", lambda d: ["train", "--resume", str(d / "run")], 2,
         "not an lrlab checkpoint",
         setup=lambda d: (torch.save({}, d / "run" / "checkpoint.pt"), _interrupted(d))),
    Case("checkpoint holds a list", lambda d: ["train", "--resume", str(d / "run")], 2,
         "not an lrlab checkpoint",
         setup=lambda d: (torch.save([1], d / "run" / "checkpoint.pt"), _interrupted(d))),
    Case("metrics epoch is a word", lambda d: ["report", str(d / "run")], 2, "epoch",
         setup=lambda d: _metrics_row(d, '{"epoch": "one", "train_loss": 0.5}')),
    Case("metrics epoch is null", lambda d: ["report", str(d / "run")], 2, "epoch",
         setup=lambda d: _metrics_row(d, '{"epoch": null}')),
    Case("metrics line not json", lambda d: ["report", str(d / "run")], 2, "line 1",
         setup=lambda d: _metrics_row(d, "garbage")),
    Case("metrics deleted before resume", lambda d: ["train", "--resume", str(d / "run")], 2,
         "incomplete",
         setup=lambda d: ((d / "run" / "metrics.jsonl").unlink(), _interrupted(d))),
    Case("config.json is a list", lambda d: ["report", str(d / "run")], 2, "JSON object",
         setup=_write("run/config.json", "[1, 2]")),
    Case("config.json is a list on resume", lambda d: ["train", "--resume", str(d / "run")], 2,
         "JSON object", setup=_write("run/config.json", "[1, 2]")),
    Case("summary.json is a string", lambda d: ["report", str(d / "run")], 2, "JSON object",
         setup=_write("run/summary.json", '"ok"')),
    Case("comparison.json without runs", lambda d: ["report", str(d / "cmp")], 2, "'runs'",
         setup=_write("cmp/comparison.json", '{"title": "x"}')),
    Case("comparison.json runs of the wrong type", lambda d: ["report", str(d / "cmp")], 2,
         "'runs'", setup=_write("cmp/comparison.json", '{"runs": "abc"}')),
    Case("comparison.json run escaping", lambda d: ["report", str(d / "cmp")], 2,
         "not a directory name",
         setup=_write("cmp/comparison.json", '{"runs": [{"name": "..", "label": "x"}]}')),
    # -- config values from TOML and flags: one typed layer that names the key -------------
    Case("toml weight_decay lots", lambda d: ["train", "--config", str(d / "c.toml")], 2,
         "weight-decay", setup=_toml('weight_decay = "lots"')),
    Case("toml momentum x", lambda d: ["train", "--config", str(d / "c.toml")], 2, "momentum",
         setup=_toml('momentum = "x"')),
    Case("toml channels_last no", lambda d: ["train", "--config", str(d / "c.toml")], 2,
         "channels-last", setup=_toml('channels_last = "no"')),
    Case("toml lr true", lambda d: ["train", "--config", str(d / "c.toml")], 2, "lr",
         setup=_toml("lr = true")),
    Case("toml schedule 42", lambda d: ["train", "--config", str(d / "c.toml")], 2,
         "schedule", setup=_toml("schedule = 42")),
    Case("toml betas words", lambda d: ["train", "--config", str(d / "c.toml")], 2, "betas",
         setup=_toml('betas = ["a", "b"]')),
    Case("toml extra", lambda d: ["train", "--config", str(d / "c.toml")], 2, "extra",
         setup=_toml("[extra]\nx = 1")),
    Case("toml no_decay one pattern", lambda d: ["train", "--config", str(d / "c.toml"),
                                                 "--out", str(d / "o"), "--name", "nd"],
         0, "", setup=_toml('no_decay = "bias"\nquiet = true\nthreads = 1'),
         check=lambda d: json.loads((d / "o" / "nd" / "config.json").read_text())[
             "no_decay"] == ["bias"]),
    Case("seed beyond numpy", lambda d: ["train", *BLOBS, "--seed", str(2**40)], 2, "seed"),
    Case("negative seed on blobs", lambda d: ["train", *BLOBS, "--seed", "-5"], 2, "seed"),
    Case("device meta", lambda d: ["train", *BLOBS, "--device", "meta"], 2, "device"),
    Case("device xpu", lambda d: ["train", *BLOBS, "--device", "xpu"], 2, "device"),
    Case("threads 100000", lambda d: ["train", *BLOBS, "--threads", "100000"], 2, "threads"),
    Case("hidden too large", lambda d: ["train", *BLOBS, "--hidden", "100000000-100000000"], 2,
         "hidden"),
    Case("val-size too large", lambda d: ["train", *BLOBS, "--val-size", "800", "--out",
                                          str(d / "o")], 2, "val-size"),
    Case("idx header overflow", lambda d: ["train", "--data-dir", str(d / "idx"), "--epochs",
                                           "1", "--quiet", "--out", str(d / "o")], 2,
         "truncated", setup=_crafted_idx),
    Case("LRLAB_DATA at nothing", lambda d: ["train", "--epochs", "1", "--quiet", "--out",
                                             str(d / "o")], 2, "LRLAB_DATA",
         env={"LRLAB_DATA": "/nonexistent/lrlab-data"}),
    # -- the transformer and its sequence datasets: options that do not apply are refused --
    Case("heads not dividing width", lambda d: ["train", "--dataset", "modadd", "--width", "30",
                                                "--heads", "4", "--out", str(d / "o")], 2,
         "not divisible", check=lambda d: not (d / "o").exists()),
    Case("norm with lenet", lambda d: ["train", "--model", "lenet", "--norm", "post",
                                       "--out", str(d / "o")], 2, "transformer model only"),
    Case("depth with mlp", lambda d: ["train", *BLOBS, "--depth", "3"], 2,
         "transformer model only"),
    Case("context with modadd", lambda d: ["train", "--dataset", "modadd", "--context", "8",
                                           "--out", str(d / "o")], 2, "chars dataset only"),
    Case("context 1", lambda d: ["train", "--dataset", "chars", "--context", "1", "--out",
                                 str(d / "o")], 2, "context"),
    Case("context beyond the cap", lambda d: ["train", "--dataset", "chars", "--context",
                                              "100000", "--out", str(d / "o")], 2, "4096"),
    Case("mlp on chars", lambda d: ["train", "--dataset", "chars", "--model", "mlp", "--out",
                                    str(d / "o")], 2, "token sequences"),
    Case("transformer on blobs", lambda d: ["train", *BLOBS, "--model", "transformer"], 2,
         "token sequences"),
    Case("channels-last with the transformer",
         lambda d: ["train", "--dataset", "modadd", "--channels-last", "--out", str(d / "o")],
         2, "channels-last"),
    Case("val-size with modadd", lambda d: ["train", "--dataset", "modadd", "--val-size", "10",
                                            "--epochs", "1", "--quiet", "--out", str(d / "o")],
         2, "val-size", check=lambda d: not (d / "o").exists()),
    Case("find-lr norm with mlp", lambda d: ["find-lr", *BLOBS, "--norm", "pre"], 2,
         "transformer model only"),
    Case("grid unknown optimizer", lambda d: ["compare", "--grid", "optimizer=nosuchopt",
                                              "--out", str(d / "g"), *BLOBS], 2, "nosuchopt",
         check=lambda d: not (d / "g").exists()),
    # -- schedules and the range test: refused before anything is written ----------------
    # 1.5^u passes the largest double (2^1024) at u = 1024·ln 2 / ln 1.5 = 1750.5: update 1751
    Case("schedule reaching inf", lambda d: ["schedule", "exp(1.5)", "--steps", "5000",
                                             "--format", "json"], 2, "update 1751"),
    # 1e10^31 = 1e310 is past the largest double (1.8e308): update 31 is the first inf
    Case("schedule exp(1e10)", lambda d: ["schedule", "exp(1e10)", "--steps", "40"], 2,
         "update 31"),
    Case("train with a schedule reaching inf",
         lambda d: ["train", *BLOBS, "--epochs", "3", "--batch-size", "1", "--schedule",
                    "exp(1.5)", "--out", str(d / "o")], 2, "update 1751",
         check=lambda d: not (d / "o").exists()),
    Case("schedule cyclic up outside (0, 1)",
         lambda d: ["schedule", "cyclic(100, up=1.5)", "--steps", "40"], 2, "position 15"),
    Case("schedule product with two plateaus",
         lambda d: ["schedule", "exp(0.9) * plateau() * plateau()", "--steps", "40"], 2,
         "only one plateau"),
    Case("schedule restarts warmup longer than a cycle",
         lambda d: ["schedule", "restarts(period=10, warmup=10)", "--steps", "40"], 2,
         "shorter than the first cycle"),
    Case("train with min_lr for the wrong number of groups",
         lambda d: ["train", *BLOBS, "--schedule", "plateau(min_lr=[0.1, 0.2, 0.3])",
                    "--out", str(d / "o")], 2, "min_lr", check=lambda d: not (d / "o").exists()),
    Case("find-lr plot of an unknown kind", lambda d: ["find-lr", *BLOBS, "--plot",
                                                       str(d / "x.foo")], 2, ".png",
         check=lambda d: not (d / "x.foo").exists()),
    Case("find-lr plot onto a directory", lambda d: ["find-lr", *BLOBS, "--plot", str(d)], 2,
         "is a directory"),
    Case("find-lr with --lr", lambda d: ["find-lr", *BLOBS, "--lr", "0.1"], 2, "--lr"),
    Case("find-lr with --sharpness", lambda d: ["find-lr", *BLOBS, "--sharpness", "1"], 2,
         "--sharpness"),
    Case("sharpness negative", lambda d: ["train", *BLOBS, "--sharpness", "-1"], 2,
         "sharpness"),
    # -- resume: every flag honoured or refused ------------------------------------------
    Case("resume with --lr", lambda d: ["train", "--resume", str(d / "run"), "--lr", "5"], 2,
         "--lr cannot change"),
    Case("resume with --optimizer", lambda d: ["train", "--resume", str(d / "run"),
                                               "--optimizer", "sgd"], 2, "cannot change"),
    Case("resume fewer epochs than done", lambda d: ["train", "--resume", str(d / "run"),
                                                     "--epochs", "1"], 2, "already trained"),
    # -- tune: spaces, storages and output directories -------------------------------------
    Case("tune into a user's dir", lambda d: ["tune", *TUNE, "--out", str(d / "mine")], 2,
         "did not write", setup=_write("mine/report.md", "my notes\n"),
         check=lambda d: (d / "mine" / "report.md").read_text() == "my notes\n" and
         not (d / "mine" / "study.db").exists()),
    Case("tune onto a corrupt study.db", lambda d: ["tune", *TUNE, "--out", str(d / "t")], 2,
         "cannot open the study storage", setup=_corrupt_study,
         check=lambda d: (d / "t" / "study.db").read_bytes() == b"not a database\n" * 64),
    Case("tune toml space of a number", lambda d: ["tune", str(d / "c.toml"), "--trials", "1",
                                                   "--out", str(d / "t")], 2, "expected a "
         "distribution", setup=_toml("[space]\nlr = 0.1")),
    Case("tune toml unknown key", lambda d: ["tune", str(d / "c.toml"), "--out", str(d / "t")],
         2, "unknown key", setup=_toml('trials = 2\n[space]\nlearning_rate = "log(1e-3, 1)"')),
    Case("tune toml trials zero", lambda d: ["tune", str(d / "c.toml"), "--out", str(d / "t")],
         2, "trials", setup=_toml('trials = 0\n[space]\nlr = "log(1e-3, 1)"')),
    Case("tune toml timeout nan", lambda d: ["tune", str(d / "c.toml"), "--out",
                                             str(d / "t")], 2, "timeout",
         setup=_toml('timeout = nan\n[space]\nlr = "log(1e-3, 1)"')),
    Case("tune toml sampler of a number", lambda d: ["tune", str(d / "c.toml"), "--out",
                                                    str(d / "t")], 2, "sampler must be",
         setup=_toml('trials = 1\nsampler = 3\n[space]\nlr = "log(1e-3, 1)"')),
    Case("tune toml final seeds of a word", lambda d: ["tune", str(d / "c.toml"), "--out",
                                                       str(d / "t")], 2, "final_seeds",
         setup=_toml('trials = 1\nfinal_seeds = "abc"\n[space]\nlr = "log(1e-3, 1)"')),
    Case("tune storage of a directory", lambda d: ["tune", *TUNE, "--storage",
                                                   f"journal:{d}", "--out", str(d / "t")],
         2, "is a directory"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, finished, tmp_path, monkeypatch, capsys):
    d = tmp_path / "d"
    shutil.copytree(finished, d)
    case.setup(d)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = {p: p.read_bytes() for p in (d / "run").rglob("*") if p.is_file()} \
        if case.code != 0 and (d / "run").exists() else {}
    code = main(case.argv(d))
    err = capsys.readouterr().err
    assert code == case.code, err
    if case.code == 2:
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert case.needle in err, err
        for path, content in before.items():  # nothing already written was changed
            if path.exists() and path.name != ".lock":
                assert path.read_bytes() == content, path
    assert case.check(d) is not False


def test_resume_from_inside_the_run_directory(finished, tmp_path, monkeypatch, capsys):
    d = tmp_path / "d"
    shutil.copytree(finished, d)
    _interrupted(d)
    monkeypatch.chdir(d / "run")
    assert main(["train", "--resume", ".", "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads(Path("summary.json").read_text())["status"] == "ok"


def test_a_full_disk_while_checkpointing_is_one_line_and_not_left_running(
        tmp_path, monkeypatch, capsys):
    from lrlab.lab.records import RunRecords

    def full(self, state):
        raise OSError(28, "No space left on device", str(self.checkpoint_path))

    monkeypatch.setattr(RunRecords, "save_checkpoint", full)
    code = main(["train", *BLOBS, "--out", str(tmp_path), "--name", "full"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left" in err, err
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "full").iterdir())


def test_append_never_glues_a_row_onto_a_foreign_partial_line(tmp_path):
    from lrlab.errors import LrlabError
    from lrlab.lab.records import RunRecords

    rec = RunRecords(tmp_path)
    rec.append_metrics({"epoch": 0})
    with rec.metrics_path.open("a") as fh:
        fh.write('{"epoch": 1, "train_lo')  # something else appended half a line
    rec.append_metrics({"epoch": 1})
    lines = rec.metrics_path.read_text().splitlines()
    assert lines[-1] == '{"epoch":1}' and len(lines) == 3
    with pytest.raises(LrlabError, match="line 2 is not a JSON object"):
        rec.metrics()


def test_the_corpus_runs_in_a_clean_environment():
    assert "LRLAB_DATA" not in os.environ or Path(os.environ["LRLAB_DATA"]).is_dir()


def test_a_range_test_where_nothing_trains_suggests_no_lr(capsys):
    # LRs of 1e-12 .. 1e-10 cannot move the loss: the test must say so and exit 1 (it ran,
    # but has no answer), not print an LR picked from noise.
    code = main(["find-lr", *BLOBS, "--start", "1e-12", "--end", "1e-10"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "nothing trained" in out + err and "Traceback" not in err
