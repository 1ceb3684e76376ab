"""Search spaces of ``lrlab tune``: the grammar, the checks, and what a trial trains."""

from __future__ import annotations

import math

import optuna
import pytest

from lrlab.errors import LrlabError
from lrlab.lab.tune.space import parse_space

BASE = {"dataset": "blobs", "model": "mlp", "epochs": 5}


def test_each_distribution_reads_back_from_its_canonical_text():
    entries = ["lr=log(1e-4, 0.1)", "weight-decay=float(0, 0.3)", "batch_size=int(16, 64)",
               "schedule=choice('cosine()', \"warmup(5%) >> cosine()\", 'wsd(decay=20%)')",
               "optimizer=choice(sgd, adam)"]
    space = parse_space(entries, BASE)
    assert [d.key for d in space.dims] == ["lr", "weight_decay", "batch_size", "schedule",
                                           "optimizer"]
    lr, wd, bs, sched, opt = space.dims
    assert (lr.kind, lr.low, lr.high) == ("log", 1e-4, 0.1)
    assert (wd.kind, wd.low, wd.high) == ("float", 0.0, 0.3)
    assert (bs.kind, bs.low, bs.high) == ("int", 16, 64)
    assert sched.choices == ("cosine()", "warmup(5%) >> cosine()", "wsd(decay=20%)")
    assert opt.choices == ("sgd", "adam")
    again = parse_space(space.to_dict(), BASE)
    assert again == space


def test_a_toml_list_is_a_choice_and_numbers_are_typed():
    space = parse_space({"lr": [0.1, 0.01], "schedule": ["cosine()", "constant()"]}, BASE)
    trial = optuna.trial.FixedTrial({"lr": "0.01", "schedule": "constant()"})
    assert space.suggest(trial) == {"lr": 0.01, "schedule": "constant()"}


def test_samples_fall_in_their_ranges_and_log_is_log_uniform():
    space = parse_space(["lr=log(1e-4, 1e-1)", "batch_size=int(16, 18)"], BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    lrs, sizes = [], set()
    for _ in range(400):
        t = study.ask()
        s = space.suggest(t)
        lrs.append(s["lr"])
        sizes.add(s["batch_size"])
        study.tell(t, 0.0)
    assert all(1e-4 <= v <= 1e-1 for v in lrs) and sizes == {16, 17, 18}
    # log-uniform over 3 decades: about a third of the draws in each decade
    share = sum(1e-3 <= v < 1e-2 for v in lrs) / len(lrs)
    assert abs(share - 1 / 3) < 0.08


def test_the_warmup_key_prepends_a_warmup_and_zero_means_none():
    space = parse_space(["warmup=int(0, 3)ep", "schedule=choice('cosine()', 'linear()')"],
                        BASE)
    assert space.apply(BASE, {"warmup": 2, "schedule": "linear()"})["schedule"] == \
        "warmup(2ep) >> linear()"
    assert space.apply(BASE, {"warmup": 0, "schedule": "cosine()"})["schedule"] == "cosine()"
    pct = parse_space(["warmup=int(0, 10)%"], {**BASE, "schedule": "cosine()"})
    assert pct.apply({**BASE, "schedule": "cosine()"}, {"warmup": 5})["schedule"] == \
        "warmup(5%) >> cosine()"


def test_grid_values_are_the_choices_and_every_integer():
    space = parse_space(["warmup=int(0, 2)", "schedule=choice('cosine()', 'linear()')"], BASE)
    assert space.grid() == {"warmup": [0, 1, 2], "schedule": ["cosine()", "linear()"]}
    assert space.grid_size() == 6
    with pytest.raises(LrlabError, match="continuous range"):
        parse_space(["lr=log(1e-3, 1)"], BASE).grid()


@pytest.mark.parametrize("entry, message", [
    ("lr", "expected KEY=DISTRIBUTION"),
    ("lr=log(1e-3)", "takes \\(low, high\\)"),
    ("lr=log(0, 1)", "needs low > 0"),
    ("lr=log(1, 0.1)", "low must be below high"),
    ("lr=log(1e-3, nan)", "not a finite number"),
    ("lr=log(a, b)", "is not a number"),
    ("lr=normal(0, 1)", "unknown distribution"),
    ("lr=1e-3", "expected log"),
    ("lr=log(1e-3, 1)ep", "only for warmup"),
    ("learning_rate=log(1e-3, 1)", "unknown key 'learning_rate'"),
    ("seed=int(0, 3)", "cannot be tuned"),
    ("out=choice('a', 'b')", "cannot be tuned"),
    ("schedule=float(0, 1)", "not a number setting"),
    ("batch_size=float(8, 64)", "not a number setting"),
    ("lr=int(1, 3)", "not an integer setting"),
    ("batch_size=int(8.5, 64)", "whole numbers"),
    ("schedule=choice()", "empty choice"),
    ("schedule=choice('cosine()', 'cosine()')", "twice"),
    ("schedule=choice('cosine()', 'nosuch()')", "schedule"),
    ("schedule=choice('cosine()", "unterminated quote"),
    ("optimizer=choice(sgd, nosuchopt)", "optimizer"),
    ("lr=choice(0.1, -1)", "lr"),
    ("batch_size=int(0, 8)", "batch"),
    ("warmup=int(-1, 3)ep", "cannot be negative"),
    ("warmup=int(0, 3)days", "unit"),
    ("warmup=choice(1, 2)", "warmup as int"),
    ("warmup=int(0, 30)ep", "longer than the 5 epochs"),
])
def test_bad_entries_are_one_line_errors_naming_the_problem(entry, message):
    with pytest.raises(LrlabError, match=message) as info:
        parse_space([entry], BASE)
    assert "\n" not in str(info.value)


def test_a_key_given_twice_and_an_empty_space_are_refused():
    with pytest.raises(LrlabError, match="given twice"):
        parse_space(["lr=log(1e-3, 1)", "lr=float(0.1, 1)"], BASE)
    with pytest.raises(LrlabError, match="empty"):
        parse_space([], BASE)


def test_a_warmup_key_with_a_schedule_that_already_warms_up_is_refused():
    with pytest.raises(LrlabError, match="already starts with a warmup"):
        parse_space(["warmup=int(0, 2)ep", "schedule=choice('warmup(1ep) >> cosine()')"],
                    BASE)
    with pytest.raises(LrlabError, match="already starts with a warmup"):
        parse_space(["warmup=int(0, 2)ep"], {**BASE, "schedule": "warmup(2) >> cosine()"})


def test_values_are_checked_against_the_base_run():
    # an LR of 0 is a valid number but not a valid run for a log range's low end
    with pytest.raises(LrlabError, match="lr"):
        parse_space(["lr=float(-0.1, 0.1)"], BASE)
    assert math.isclose(parse_space(["lr=float(0.1, 0.2)"], BASE).dims[0].high, 0.2)
