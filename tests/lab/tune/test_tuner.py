"""``lrlab tune``: objective on validation, diverged/pruned trials, resuming, the finish.

Values are checked against what the trial runs recorded on disk and against scipy / Optuna
run here, never against numbers the tuner printed.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from scipy import stats

from lrlab.errors import LrlabError
from lrlab.lab.train.config import config_from_dict, load_toml
from lrlab.lab.tune import tuner as tune_mod
from lrlab.lab.tune.tuner import settings_from, tune

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
# the unit-6 data (validation and test differ) at a size that trains in a second
CLS = {"dataset": "classification", "model": "mlp", "batch_size": 256, "epochs": 2,
       "threads": 1}


def lrlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrlab", *args], env=ENV, capture_output=True,
                          text=True, timeout=600)


def load(out: Path, name: str = "study") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def summary_of(trial: optuna.trial.FrozenTrial) -> dict:
    return json.loads((Path(trial.user_attrs["run"]) / "summary.json").read_text())


def test_the_objective_is_each_runs_final_validation_accuracy(tmp_path):
    s = settings_from(space=["lr=log(1e-3, 1e-1)", "schedule=choice('cosine()', 'constant()')"],
                      overrides=CLS, trials=3, final_seeds=0)
    result = tune(s, out=tmp_path, echo=False)
    study = load(tmp_path)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 and result.finished == 3
    differ = 0
    for t in trials:
        summ = summary_of(t)
        assert t.value == summ["final_val_acc"]  # validation, read from the run's own record
        differ += summ["final_val_acc"] != summ["final_test_acc"]
        config = json.loads((Path(t.user_attrs["run"]) / "config.json").read_text())
        assert config["lr"] == pytest.approx(t.params["lr"]) and \
            config["schedule"] == t.params["schedule"]
    assert differ  # validation and test differ on this data, so reading test would show
    best = max(trials, key=lambda t: t.value)
    assert result.best["number"] == best.number
    # best.toml holds the winner's settings; the printed command trains the same run
    saved = config_from_dict(load_toml(tmp_path / "best.toml"))
    assert saved.lr == pytest.approx(best.params["lr"]) and \
        saved.schedule == best.params["schedule"]
    from lrlab.cli import build_parser, config_from_args

    args = build_parser().parse_args(shlex.split(result.command)[1:])
    assert config_from_args(args).result_fields() == saved.result_fields()
    page = (tmp_path / "report.html").read_text()
    assert "LR sensitivity" in page and "data:image/png;base64" in page


def test_a_diverged_trial_is_complete_at_chance_with_its_lr(tmp_path):
    s = settings_from(space=["lr=choice(1e4, 0.01)"],
                      overrides={**CLS, "optimizer": "sgd", "momentum": 0.9}, trials=2,
                      sampler="grid", final_seeds=0)
    tune(s, out=tmp_path, echo=False)
    trials = {t.params["lr"]: t for t in load(tmp_path).get_trials()}
    bad = trials["1e4"]
    assert bad.state == TrialState.COMPLETE and bad.user_attrs["status"] == "diverged"
    assert bad.user_attrs["lr"] == 1e4 and bad.user_attrs["diverged_at"] is not None
    summ = summary_of(bad)
    assert summ["status"] == "diverged"
    # chance accuracy of the two-class problem: 1/2 (the dataset gives no frequencies)
    assert bad.value == 0.5
    assert trials["0.01"].user_attrs["status"] == "ok"
    page = (tmp_path / "report.md").read_text()
    assert "diverged at update" in page


def test_a_pruned_trial_stops_its_run_and_is_marked(tmp_path, monkeypatch):
    # Optuna's ThresholdPruner with an unreachable lower bound prunes at the first report
    monkeypatch.setattr(tune_mod, "_make_pruner",
                        lambda s, epochs: optuna.pruners.ThresholdPruner(lower=2.0))
    s = settings_from(space=["lr=log(1e-3, 1e-1)"], overrides={**CLS, "epochs": 3},
                      trials=2, final_seeds=0)
    result = tune(s, out=tmp_path, echo=False)
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2 and result.finished == 2
    for t in trials:
        summ = summary_of(t)
        assert summ["status"] == "pruned" and summ["epochs_done"] == 1
        assert list(t.intermediate_values) == [0]
    assert result.best is None and "pruned" in (tmp_path / "report.md").read_text()


def test_re_running_continues_the_study_and_other_settings_are_refused(tmp_path):
    space = ["lr=log(1e-3, 1e-1)"]
    tune(settings_from(space=space, overrides=CLS, trials=2, final_seeds=0), out=tmp_path,
         echo=False)
    tune(settings_from(space=space, overrides=CLS, trials=4, final_seeds=0), out=tmp_path,
         echo=False)
    trials = load(tmp_path).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # finished: the same command again trains nothing more
    tune(settings_from(space=space, overrides=CLS, trials=4, final_seeds=0), out=tmp_path,
         echo=False)
    assert len(load(tmp_path).get_trials()) == 4
    before = (tmp_path / "study.db").read_bytes()
    with pytest.raises(LrlabError, match="another space"):
        tune(settings_from(space=["lr=log(1e-4, 1e-1)"], overrides=CLS, trials=5,
                           final_seeds=0), out=tmp_path, echo=False)
    with pytest.raises(LrlabError, match="another base"):
        tune(settings_from(space=space, overrides={**CLS, "epochs": 3}, trials=5,
                           final_seeds=0), out=tmp_path, echo=False)
    assert len(load(tmp_path).get_trials()) == 4
    assert (tmp_path / "study.db").read_bytes() == before


def test_the_finish_reports_test_accuracy_of_fresh_seeds_with_welch(tmp_path):
    s = settings_from(space=["lr=log(1e-2, 1e-1)"], overrides=CLS, trials=2, final_seeds=3)
    s.default = {"lr": 0.001}
    result = tune(s, out=tmp_path, echo=False)
    final = result.final
    assert final is not None and final["seeds"] == [1000, 1001, 1002]
    runs = tmp_path / f"final-t{result.best['number']:04d}" / "runs"
    tuned = [json.loads((runs / f"tuned-s{k}" / "summary.json").read_text())["final_test_acc"]
             for k in final["seeds"]]
    default = [json.loads((runs / f"default-s{k}" / "summary.json").read_text())
               ["final_test_acc"] for k in final["seeds"]]
    assert final["tuned"] == tuned and final["default"] == default
    cfg = json.loads((runs / "default-s1000" / "config.json").read_text())
    assert cfg["lr"] == 0.001 and cfg["seed"] == 1000
    ref = stats.ttest_ind(tuned, default, equal_var=False)
    assert final["contrast"].p == pytest.approx(float(ref.pvalue))
    t = final["tuned_summary"]
    half = stats.t.ppf(0.975, 2) * stats.tstd(tuned) / math.sqrt(3)
    assert t.ci == pytest.approx((sum(tuned) / 3 - half, sum(tuned) / 3 + half))
    md = (tmp_path / "report.md").read_text()
    assert "Tuned vs default on the test set" in md and "Welch p" in md


def test_lrlab_tune_is_the_one_call_api(tmp_path):
    import lrlab

    result = lrlab.tune(train=CLS, space=["lr=log(1e-3, 1e-1)"], trials=2, final_seeds=0,
                        out=tmp_path, echo=False)
    assert result.finished == 2 and len(load(tmp_path).get_trials()) == 2


def test_balance_gives_every_family_the_same_number_of_trials(tmp_path):
    s = settings_from(space=["schedule=choice('cosine()', 'constant()', 'linear()')",
                             "lr=log(1e-3, 1e-1)"], overrides={**CLS, "epochs": 1},
                      trials=6, balance="schedule", final_seeds=0)
    tune(s, out=tmp_path, echo=False)
    used = [t.params["schedule"] for t in load(tmp_path).get_trials()]
    assert sorted(used) == sorted(["cosine()", "constant()", "linear()"] * 2)


@pytest.fixture(scope="module")
def a_study(tmp_path_factory) -> Path:
    """A finished one-trial study made by the command line, copied by each test that uses it."""
    out = tmp_path_factory.mktemp("tune") / "study"
    ok = lrlab("tune", "--dataset", "classification", "--epochs", "1", "--threads", "1",
               "--final-seeds", "0", "--trials", "1", "--out", str(out), "--space",
               "lr=log(1e-3, 1e-1)")
    assert ok.returncode == 0, ok.stderr
    return out


# TMP in an argument is this test's own tmp_path: paths said not to exist are made sure not to
# (a global path such as /nonexistent/dir may exist on a shared machine where tests run as root)
@pytest.mark.parametrize("args, message", [
    (["--space", "lr=log(1e-3"], "expected log"),
    (["--space", "lr=log(1e-3, 1)", "--space", "learning_rate=log(1e-3, 1)"], "unknown key"),
    (["--space", "lr=log(1e-3, 1)", "--sampler", "grid"], "continuous range"),
    (["--space", "lr=log(1e-3, 1)", "--balance", "lr"], "choice"),
    # the study is in study.db: another storage is refused before it is opened
    (["--space", "lr=log(1e-3, 1)", "--storage", "postgresql://u:pw@127.0.0.1:1/db"],
     "not of postgresql://u:***@127.0.0.1:1/db"),
    (["--space", "lr=log(1e-3, 1)", "--storage", "journal:TMP/j.log"],
     "not of journal:TMP/j.log"),
    (["--storage", "journal:TMP/j.log", "--space", "lr=log(1e-3, 1)"],
     "not of journal:TMP/j.log"),
    (["--space", "lr=log(1e-3, 1)", "--storage", "redis://localhost"], "expected sqlite"),
    (["--space", "lr=log(1e-3, 1)", "--storage", "journal:TMP/missing/dir/j.log"],
     "directory TMP/missing/dir does not exist"),
    (["--storage", "journal:TMP/missing/dir/j.log", "--space", "lr=log(1e-3, 1)"],
     "directory TMP/missing/dir does not exist"),
    (["--space", "lr=log(1e-3, 1)", "--storage", "sqlite:///TMP/missing/s.db"],
     "directory TMP/missing does not exist"),
    (["--space", "lr=log(1e-3, 1)", "--no-prune", "--pruner", "median"], "contradicts"),
    (["--space", "lr=log(1e-3, 1)", "--val-size", "0", "--dataset", "blobs"],
     "validation split"),
    (["--space", "lr=log(1e-3, 1)", "--name", "x"], "--name does not apply"),
    (["--preset", "nosuch"], "unknown tuning preset"),
])
def test_bad_inputs_are_one_line_errors_and_leave_the_study_alone(tmp_path, a_study, args,
                                                                   message):
    import shutil

    out = tmp_path / "study"
    shutil.copytree(a_study, out)
    files = tmp_path / "files"
    files.mkdir()
    args = [a.replace("TMP", str(files)) for a in args]
    message = message.replace("TMP", str(files))
    base = ["--dataset", "classification", "--epochs", "1", "--threads", "1",
            "--final-seeds", "0", "--trials", "1", "--out", str(out)]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = lrlab("tune", *base, *args)
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in bad.stderr, \
        bad.stderr
    assert "pw" not in bad.stderr
    # nothing was written: not in the study, not where a storage was named
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not any(files.iterdir())


def test_the_out_of_a_study_is_refused_to_any_other_storage(tmp_path):
    """A second, different storage pointed at a used --out is refused before it is opened,
    whichever storage the study is in; the same storage, and the directory copied with its
    own study.db, continue the study."""
    first = f"journal:{tmp_path / 'first.log'}"
    out = tmp_path / "out"
    s = settings_from(space=["lr=log(1e-3, 1e-1)"], overrides={**CLS, "epochs": 1}, trials=1,
                      final_seeds=0)
    tune(s, out=out, storage=first, echo=False)
    journal = (tmp_path / "first.log").read_bytes()
    runs = sorted(p.name for p in (out / "trials").iterdir())
    assert runs == ["study-t0000"]
    for other in (None, f"journal:{tmp_path / 'second.log'}",
                  f"sqlite:///{tmp_path / 'second.db'}"):
        with pytest.raises(LrlabError, match=r"holds study 'study' of the storage journal:.*"
                           "first.log") as e:
            tune(s, out=out, storage=other, echo=False)
        assert "\n" not in str(e.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["first.log", "out"]
        assert not (out / "study.db").exists()
    assert (tmp_path / "first.log").read_bytes() == journal
    assert sorted(p.name for p in (out / "trials").iterdir()) == runs
    # the same storage, spelt journal://PATH, continues it
    s.trials = 2
    assert tune(s, out=out, storage=f"journal://{tmp_path / 'first.log'}",
                echo=False).finished == 2
    # a study in OUT/study.db, copied elsewhere, continues from the copy's own study.db
    import shutil

    own = tmp_path / "own"
    tune(s, out=own, echo=False)
    copy = tmp_path / "copy"
    shutil.copytree(own, copy)
    s.trials = 3
    assert tune(s, out=copy, echo=False).finished == 3
    assert len(load(own).get_trials()) == 2 and len(load(copy).get_trials()) == 3
    with pytest.raises(LrlabError, match="continue it there \\(without --storage\\)"):
        tune(s, out=copy, storage=first, echo=False)


def test_an_unreachable_server_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    bad = lrlab("tune", "--dataset", "classification", "--epochs", "1", "--threads", "1",
                "--final-seeds", "0", "--trials", "1", "--out", str(out), "--space",
                "lr=log(1e-3, 1)", "--storage", "postgresql://u:pw@127.0.0.1:1/db")
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open the study storage" in lines[0], bad.stderr
    assert "pw" not in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()


def test_inputs_are_checked_before_the_out_directory_whatever_the_flag_order(tmp_path):
    """A bad storage and a bad --out together: the storage is named, in either order."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.md").write_text("mine\n")
    missing = tmp_path / "missing" / "dir"
    space = ["--dataset", "blobs", "--space", "lr=log(1e-3, 1)", "--trials", "1"]
    for args in (["--storage", f"journal:{missing}/j.log", "--out", str(user)],
                 ["--out", str(user), "--storage", f"journal:{missing}/j.log"]):
        bad = lrlab("tune", *space, *args)
        assert bad.returncode == 2 and f"directory {missing} does not exist" in bad.stderr, \
            bad.stderr
    s = settings_from(space=["lr=log(1e-3, 1)"], overrides={"dataset": "blobs"}, trials=1)
    with pytest.raises(LrlabError, match="--heartbeat"):
        tune(s, out=user, storage="redis://x", heartbeat=0, echo=False)
    with pytest.raises(LrlabError, match="expected sqlite"):
        tune(s, out=user, storage="redis://x", echo=False)
    assert sorted(p.name for p in user.iterdir()) == ["notes.md"]
    assert not (tmp_path / "missing").exists()


def test_the_readme_preset_is_known_and_valid():
    from lrlab.lab.tune.presets import TUNE_PRESETS

    for name in TUNE_PRESETS:
        s = settings_from(preset=name)
        assert s.trials and s.space.dims and s.final_seeds >= 1
        if s.balance:  # equal budget: the trials split evenly over the family
            n = len(next(d for d in s.space.dims if d.key == s.balance).choices)
            assert s.trials % n == 0


# -- workers -----------------------------------------------------------------------------------
WORKER = ["--dataset", "blobs", "--optimizer", "adam", "--batch-size", "4", "--epochs", "25",
          "--threads", "1", "--quiet", "--space", "lr=log(1e-3, 1e-2)", "--study", "s",
          "--final-seeds", "0", "--heartbeat", "1"]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lrlab", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def a_trial_training_in(proc: subprocess.Popen, out: Path, timeout: float = 300) -> int:
    """The number of a trial ``proc`` is training (it holds the run's lock, an epoch done)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in sorted((out / "trials").glob("s-t*")):
            lock, metrics = run / ".lock", run / "metrics.jsonl"
            try:
                holder = int(lock.read_text().split()[0])
                rows = metrics.read_text().count("\n")
            except (OSError, ValueError, IndexError):
                continue
            if holder == proc.pid and rows >= 1 and rows < 20:
                return int(run.name.removeprefix("s-t"))
        assert proc.poll() is None, f"worker exited early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError("no trial started")


def two_workers_one_killed(tmp_path: Path, storage: str, trials: int = 4) -> list:
    args = [*WORKER, "--trials", str(trials), "--storage", storage]
    a = start("tune", *args, "--out", str(tmp_path / "a"))
    b = start("tune", *args, "--out", str(tmp_path / "b"))
    try:
        killed = a_trial_training_in(a, tmp_path / "a")
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=60)
        out, err = b.communicate(timeout=600)
        assert b.returncode == 0, err
    finally:
        for p in (a, b):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    from lrlab.lab.tune.storage import open_storage

    store, _ = open_storage(storage, tmp_path, 1)
    found = optuna.load_study(study_name="s", storage=store).get_trials()
    numbers = [t.number for t in found]
    assert len(numbers) == len(set(numbers))  # no trial number twice
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    assert len(complete) == trials  # the requested number, no more
    failed = [t for t in found if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed]  # the killed trial is failed, not lost
    again = [t for t in complete if t.system_attrs.get("failed_trial") == killed]
    assert len(again) == 1 and again[0].params == failed[0].params  # and retried once
    assert not [t for t in found if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return found


def test_two_workers_on_sqlite_split_the_trials_and_retry_a_killed_one(tmp_path):
    two_workers_one_killed(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


def test_two_workers_on_a_journal_file_retry_a_killed_one(tmp_path):
    two_workers_one_killed(tmp_path, f"journal:{tmp_path / 'journal.log'}")


def test_an_interrupted_trial_is_retried_when_the_command_runs_again(tmp_path):
    args = [*WORKER, "--trials", "2", "--out", str(tmp_path)]
    a = start("tune", *args)
    n = a_trial_training_in(a, tmp_path)
    os.killpg(a.pid, signal.SIGINT)
    out, err = a.communicate(timeout=120)
    assert a.returncode == 130 and "run the same command again" in err
    stopped = load(tmp_path, "s").get_trials()[n]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["status"] == "interrupted"
    again = lrlab("tune", *args)
    assert again.returncode == 0, again.stderr
    trials = load(tmp_path, "s").get_trials()
    retry = [t for t in trials if t.user_attrs.get("retry_of") == n]
    assert len(retry) == 1 and retry[0].params == stopped.params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


# -- a real PostgreSQL server -------------------------------------------------------------------
def _pg_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server started for this test on loopback, as an unprivileged user."""
    import pwd
    import socket
    import tempfile

    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); the "
                    "same test runs on SQLite and on a journal file above")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the PostgreSQL driver is not installed (pip install 'psycopg[binary]')")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="lrlab-pg-"))
    base.chmod(0o777)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    sock.chmod(0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, str(pg / "initdb"), "-D", str(data), "-U", "lrlab",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(base / "log"), "-o",
                    f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "lrlab", "tune"], check=True, capture_output=True)
        yield f"postgresql://lrlab@127.0.0.1:{port}/tune"
    finally:
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        subprocess.run(["rm", "-rf", str(base)])


def test_two_workers_on_postgresql_split_the_trials_and_retry_a_killed_one(tmp_path,
                                                                           postgres_url):
    found = two_workers_one_killed(tmp_path, postgres_url)
    # both workers trained trials (each wrote run directories of its own)
    assert list((tmp_path / "a" / "trials").glob("s-t*")) and \
        list((tmp_path / "b" / "trials").glob("s-t*"))
    assert len(found) == 5
