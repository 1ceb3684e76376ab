"""The session's pieces on their own: the divergence record, the health rules, and the
stacked loop's promise to use only the session's public face."""

from __future__ import annotations

import ast
import math
from pathlib import Path

from lrlab.lab.records import Divergence
from lrlab.lab.train import health
from lrlab.lab.train.health import Health

SRC = Path(__file__).resolve().parents[3] / "src" / "lrlab"


def test_divergence_writes_the_record_keys_in_their_order():
    d = Divergence("explosion", 2, 41, 0.5, 3e4, loss_before=0.7)
    assert list(d.to_dict().items()) == [("cause", "explosion"), ("epoch", 2), ("update", 41),
                                         ("lr", 0.5), ("loss", 3e4), ("loss_before", 0.7)]
    e = Divergence("nonfinite-eval", 1, 9, 0.1, math.inf, metric="val_loss")
    assert list(e.to_dict()) == ["cause", "epoch", "update", "lr", "loss", "metric",
                                 "loss_before"]
    assert Divergence.from_dict(e.to_dict()) == e
    assert Divergence.from_dict(d.to_dict()) == d


def test_divergence_reads_older_records():
    old = Divergence.from_dict({"kind": "collapse", "epoch": 3, "update": None, "lr": 1,
                                "loss": "nan"})
    assert old.cause == "collapse" and old.epoch == 3 and old.update is None
    assert old.lr == 1.0 and math.isnan(old.loss) and old.loss_before is None
    bare = Divergence.from_dict({"update": 12, "lr": 5.0, "loss": "inf", "epoch": 1})
    assert bare.cause is None and bare.loss == math.inf and bare.metric is None


def test_health_rules():
    assert health.exploded(math.nan, 1.0) and health.exploded(1001.0, 1.0)
    assert not health.exploded(999.0, 1.0) and health.exploded(2.0, 1e-6)  # floor 1e-3
    chance = math.log(10)
    assert health.learned(0.79 * chance, chance) and not health.learned("nan", chance)
    assert not health.collapsed(Health(), chance, chance)
    assert health.collapsed(Health(learned=True), 0.97 * chance, chance)
    row = {"epoch": 1, "train_loss": chance, "train_acc": 0.15}
    assert health.stuck(row, chance, 0.1) and not health.stuck({**row, "epoch": 0}, chance, 0.1)
    assert not health.stuck({**row, "train_acc": 0.16}, chance, 0.1)
    assert health.nonfinite_eval({"test_loss": 1.0, "val_loss": math.nan})[0] == "val_loss"
    assert health.nonfinite_eval({"test_loss": 1.0}) is None
    assert health.large_updates({"a": 0.5, "b": 0.49}) == [("a", 0.5)]
    h = Health()
    for update, loss in enumerate([1.0, 3.0, 3.0]):
        h.observe(update, loss, chance=1.2)
    # the average 1, 1.2, 1.38 first reaches 0.97 × 1.2 at update 1
    assert h.candidate == 1 and h.ema is not None and math.isclose(h.ema, 1.38)
    h.observe(3, math.nan, chance=1.2)  # skipped
    assert math.isclose(h.ema, 1.38)


def test_the_stacked_loop_uses_no_private_name_of_another_module():
    """vectorised.py drives a RunSession through its public methods and attributes only."""
    tree = ast.parse((SRC / "lab" / "train" / "vectorised.py").read_text())
    own = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    own |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name)}
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            private += [a.name for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            base = node.value
            if not (isinstance(base, ast.Name) and base.id == "self") \
                    and node.attr not in own:
                private.append(node.attr)
    assert private == []
