"""lrlab.Scheduler driven by a real PyTorch Lightning Trainer (CPU, tiny model, seconds).

Expected LRs come from the schedule's formula written out here and, for the plateau, from
torch's own ReduceLROnPlateau run on the same metrics.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

L = pytest.importorskip("lightning.pytorch", reason="PyTorch Lightning is not installed "
                        "(pip install -e '.[test]')")

from lrlab.errors import LrlabError  # noqa: E402
from lrlab.integrations import LightningPlateau  # noqa: E402
from lrlab.scheduler import Scheduler  # noqa: E402

PEAK = 0.1
N, BATCH = 32, 4
PER_EPOCH = N // BATCH  # 8 updates per epoch
VAL = [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85]  # a scripted val_loss per epoch


def _cos(u: float, T: float) -> float:
    return (1 + math.cos(math.pi * u / T)) / 2


def plateau_factors(metrics: list[float], factor: float, patience: int) -> list[float]:
    """Factor after 0, 1, 2, ... reports: torch's ReduceLROnPlateau on the same metrics."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=factor, patience=patience,
                                                     eps=0.0)
    out = [1.0]
    for m in metrics:
        ref.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


class Tiny(L.LightningModule):
    """A linear model that records (global_step, lr) at every training step."""

    def __init__(self, spec: str, sched_kw: dict, config: dict, val: list[float] | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.spec, self.sched_kw, self.config, self.val = spec, sched_kw, config, val
        self.seen: list[tuple[int, float]] = []

    def training_step(self, batch, batch_idx):
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.seen.append((self.trainer.global_step, float(lr)))
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.val is not None and not self.trainer.sanity_checking:
            loss = torch.tensor(self.val[self.current_epoch])
        self.log("val_loss", loss)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=PEAK)
        self.sched = Scheduler(opt, self.spec, **self.sched_kw)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.sched, **self.config}}


def _loader(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    data = torch.utils.data.TensorDataset(torch.randn(N, 4, generator=g),
                                          torch.randn(N, 1, generator=g))
    return torch.utils.data.DataLoader(data, batch_size=BATCH)


#: Lightning's advice for real training runs (workers, loggers, ...), not about schedulers.
_NOISE = ".*(num_workers|bottleneck|resum|val_dataloader|LeafSpec|callbacks used).*"


def _fit(module: Tiny, tmp_path, epochs: int, callbacks=(), ckpt_path=None,
         validate: bool = False) -> Tiny:
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, L.callbacks.ModelCheckpoint) for c in callbacks),
        callbacks=list(callbacks), default_root_dir=tmp_path,
        limit_val_batches=1 if validate else 0, num_sanity_val_steps=1 if validate else 0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOISE)
        trainer.fit(module, _loader(), _loader(1) if validate else None, ckpt_path=ckpt_path)
    return module


def test_interval_step_follows_the_formula(tmp_path):
    total = 3 * PER_EPOCH
    m = _fit(Tiny("warmup(3) >> cosine()", {"total_steps": total}, {"interval": "step"}),
             tmp_path, epochs=3)
    want = [PEAK * ((g + 1) / 3 if g < 3 else _cos(g - 3, total - 3)) for g in range(total)]
    assert [g for g, _ in m.seen] == list(range(total))
    assert [lr for _, lr in m.seen] == pytest.approx(want, abs=1e-12)


def test_interval_epoch_follows_the_formula(tmp_path):
    m = _fit(Tiny("warmup(2) >> cosine()", {"per": "epoch", "epochs": 4},
                  {"interval": "epoch"}), tmp_path, epochs=4)
    per_epoch = [PEAK * ((e + 1) / 2 if e < 2 else _cos(e - 2, 2)) for e in range(4)]
    assert [lr for _, lr in m.seen] == pytest.approx(
        [per_epoch[g // PER_EPOCH] for g in range(4 * PER_EPOCH)], abs=1e-12)


def test_checkpoint_resume_mid_epoch_gives_the_uninterrupted_lrs(tmp_path):
    """Step interval + plateau (LightningPlateau), checkpoints every 5 updates (mid-epoch);
    a new Trainer resumed at update 20 (epoch 2, after one plateau reduction) goes on with
    exactly the LRs of the uninterrupted run."""
    spec, total = "warmup(3) >> cosine() * plateau(factor=0.5, patience=0)", 3 * PER_EPOCH
    val = [1.0, 2.0, 3.0]  # report 2 is worse: the factor halves after epoch 1

    def module():
        return Tiny(spec, {"total_steps": total}, {"interval": "step"}, val=val)

    ckpt = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5,
                                       save_top_k=-1, filename="{step}")
    full = _fit(module(), tmp_path, 3, callbacks=[ckpt, LightningPlateau()], validate=True)
    factor = plateau_factors(val, 0.5, 0)
    want = [PEAK * ((g + 1) / 3 if g < 3 else _cos(g - 3, total - 3)) * factor[g // PER_EPOCH]
            for g in range(total)]
    assert [lr for _, lr in full.seen] == pytest.approx(want, abs=1e-12)
    assert factor[2] == 0.5  # the resume point has a reduced plateau factor to restore

    path = tmp_path / "ckpt" / "step=20.ckpt"
    resumed = _fit(module(), tmp_path / "b", 3, callbacks=[LightningPlateau()],
                   ckpt_path=str(path), validate=True)
    assert resumed.seen[0][0] == 20
    assert resumed.seen == [(g, lr) for g, lr in full.seen if g >= 20]
    assert resumed.sched.plateau_state.reports == full.sched.plateau_state.reports == 3


def test_reduce_on_plateau_monitor_reports_and_advances_per_epoch(tmp_path):
    """Lightning's native path: step(val_loss) once per epoch, never resets the schedule."""
    epochs = 6
    spec = "warmup(2) >> constant() * plateau(factor=0.5, patience=1)"
    config = {"interval": "epoch", "monitor": "val_loss", "reduce_on_plateau": True}
    m = _fit(Tiny(spec, {"per": "epoch", "epochs": epochs}, config, val=VAL), tmp_path,
             epochs, validate=True)
    factor = plateau_factors(VAL[:epochs], 0.5, 1)
    per_epoch = [PEAK * min((e + 1) / 2, 1.0) * factor[e] for e in range(epochs)]
    assert [lr for _, lr in m.seen] == pytest.approx(
        [per_epoch[g // PER_EPOCH] for g in range(epochs * PER_EPOCH)], abs=1e-12)
    assert min(factor) < 1.0 and m.sched.count == epochs
    assert m.sched.plateau_state.reports == epochs


def test_lightning_plateau_callback_reports_once_per_validation(tmp_path):
    epochs, total = 6, 6 * PER_EPOCH
    spec = "warmup(4) >> constant() * plateau(factor=0.5, patience=1)"
    m = _fit(Tiny(spec, {"total_steps": total}, {"interval": "step"}, val=VAL), tmp_path,
             epochs, callbacks=[LightningPlateau(monitor="val_loss")], validate=True)
    factor = plateau_factors(VAL[:epochs], 0.5, 1)
    want = [PEAK * min((g + 1) / 4, 1.0) * factor[g // PER_EPOCH] for g in range(total)]
    assert [lr for _, lr in m.seen] == pytest.approx(want, abs=1e-12)
    assert m.sched.plateau_state.reports == epochs  # the sanity check was not reported


@pytest.mark.parametrize("spec,sched_kw,config,match", [
    ("cosine()", {"total_steps": 8}, {"interval": "step"}, "no lrlab.Scheduler"),
    ("cosine() * plateau()", {"per": "epoch", "epochs": 1},
     {"interval": "epoch", "monitor": "val_loss", "reduce_on_plateau": True}, "not both"),
    ("cosine() * plateau()", {"total_steps": 8}, {"interval": "epoch"}, "per="),
])
def test_lightning_plateau_refuses_set_ups_that_cannot_work(tmp_path, spec, sched_kw, config,
                                                           match):
    with pytest.raises(LrlabError, match=match):
        _fit(Tiny(spec, sched_kw, config), tmp_path, 1, callbacks=[LightningPlateau()],
             validate=True)


def test_reduce_on_plateau_without_a_plateau_is_refused_not_truncated(tmp_path):
    """Lightning passes the metric (0.95, ...) to step(); without a plateau it used to become
    epoch int(0.95) = 0, resetting the schedule every epoch."""
    config = {"interval": "epoch", "monitor": "val_loss", "reduce_on_plateau": True}
    with pytest.raises(LrlabError, match="no plateau"):
        _fit(Tiny("warmup(2) >> cosine()", {"per": "epoch", "epochs": 3}, config, val=VAL),
             tmp_path, 3, validate=True)


def test_lightning_plateau_is_a_module_level_class_that_pickles_by_its_name():
    import pickle

    import lrlab.integrations.lightning_plateau as module

    assert LightningPlateau is module.LightningPlateau
    assert LightningPlateau.__qualname__ == "LightningPlateau"
    assert issubclass(LightningPlateau, L.Callback)
    copy = pickle.loads(pickle.dumps(LightningPlateau(monitor="val_acc", strict=False)))
    assert type(copy) is LightningPlateau and (copy.monitor, copy.strict) == ("val_acc", False)
