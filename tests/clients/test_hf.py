"""lrlab.Scheduler driven by a real Hugging Face ``transformers.Trainer`` (CPU, offline, seconds).

The Trainer gets ``optimizers=(opt, scheduler)``; expected LRs come from the schedule's
formula written out here (HF's linear-with-warmup lambda for the first test) and, for the
plateau, from torch's ReduceLROnPlateau run on the same metrics.
"""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

# read by huggingface_hub when transformers is imported: set before the import (no downloads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="transformers is not installed "
                                   "(pip install -e '.[test]')")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from lrlab.errors import LrlabError  # noqa: E402
from lrlab.integrations import HFPlateau  # noqa: E402
from lrlab.scheduler import ScheduleChangedWarning, Scheduler  # noqa: E402

PEAK = 0.1
N, BATCH = 32, 4
EVAL = [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85]  # scripted eval_loss, one per evaluation


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("WANDB_DISABLED", "true")


class Tiny(torch.nn.Module):
    """Linear regression returning ``{"loss": ...}``; in eval mode the loss is scripted."""

    def __init__(self, eval_losses: list[float] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.eval_losses, self.evals = eval_losses, 0

    def forward(self, x, labels):
        loss = torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), labels)
        if not self.training and self.eval_losses is not None:
            loss = torch.tensor(self.eval_losses[self.evals])
            self.evals += 1
        return {"loss": loss}


class Data(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class RecordLR(transformers.TrainerCallback):
    """(global_step, lr) at the start of every optimizer update."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append((state.global_step, float(optimizer.param_groups[0]["lr"])))


def _train(tmp_path, spec: str, total: int, max_steps: int | None = None, *, save_steps=0,
           eval_steps=0, callbacks=(), resume=None, eval_losses=None):
    model = Tiny(eval_losses)
    opt = torch.optim.SGD(model.parameters(), lr=PEAK)
    sched = Scheduler(opt, spec, total_steps=total)
    record = RecordLR()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps or total,
        per_device_train_batch_size=BATCH, per_device_eval_batch_size=N, report_to="none",
        logging_strategy="no", save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500, eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps or None, use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True, seed=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Data(N, 0),
        eval_dataset=Data(N, 1) if eval_steps else None, optimizers=(opt, sched),
        callbacks=[record, *callbacks],
    )
    trainer.train(resume_from_checkpoint=resume)
    return record.seen, sched


def _cos(u: float, T: float) -> float:
    return (1 + math.cos(math.pi * u / T)) / 2


def test_hf_trainer_steps_it_like_hfs_own_linear_schedule(tmp_path):
    W, total = 3, 20

    def hf_linear(step):  # transformers.get_linear_schedule_with_warmup's lambda
        if step < W:
            return step / max(1, W)
        return max(0.0, (total - step) / max(1, total - W))

    seen, _ = _train(tmp_path, f"warmup({W}, start=0) >> linear()", total)
    assert [g for g, _ in seen] == list(range(total))
    assert [lr for _, lr in seen] == pytest.approx([PEAK * hf_linear(g) for g in range(total)],
                                                   abs=1e-12)


def test_resume_from_checkpoint_continues_the_lr_sequence_exactly(tmp_path):
    spec, total = "warmup(3) >> cosine()", 24  # 8 updates per epoch: step 10 is mid-epoch
    full, _ = _train(tmp_path, spec, total, save_steps=5)
    assert [lr for _, lr in full] == pytest.approx(
        [PEAK * ((g + 1) / 3 if g < 3 else _cos(g - 3, total - 3)) for g in range(total)],
        abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleChangedWarning)  # same settings: silent
        resumed, sched = _train(tmp_path / "b", spec, total,
                                resume=str(tmp_path / "out" / "checkpoint-10"))
    assert resumed == [(g, lr) for g, lr in full if g >= 10]
    assert sched.count == total


def test_extending_a_run_follows_the_longer_schedule(tmp_path):
    """48 -> 96 in the issue, 12 -> 24 here: the new total wins (with a warning naming
    both); the old code restored total_steps=12 from the checkpoint and trained at LR 0."""
    spec = "warmup(2) >> cosine()"
    _train(tmp_path, spec, 12, save_steps=12)
    with pytest.warns(ScheduleChangedWarning, match="total_steps 12 -> 24"):
        seen, _ = _train(tmp_path / "b", spec, 24,
                         resume=str(tmp_path / "out" / "checkpoint-12"))
    assert [g for g, _ in seen] == list(range(12, 24))
    assert [lr for _, lr in seen] == pytest.approx([PEAK * _cos(g - 2, 22) for g in
                                                    range(12, 24)], abs=1e-12)


def test_hf_plateau_callback_reports_each_evaluation(tmp_path):
    spec, total, every = "warmup(2) >> constant() * plateau(factor=0.5, patience=1)", 24, 4
    seen, sched = _train(tmp_path, spec, total, eval_steps=every, callbacks=[HFPlateau()],
                         eval_losses=EVAL)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, eps=0.0)
    factor = [1.0]
    for m in EVAL[: total // every]:
        ref.step(m)
        factor.append(opt.param_groups[0]["lr"])
    # the evaluation after update 4k reports before update 4k runs
    want = [PEAK * min((g + 1) / 2, 1.0) * factor[g // every] for g in range(total)]
    assert [lr for _, lr in seen] == pytest.approx(want, abs=1e-12)
    assert min(factor) < 1.0 and sched.plateau_state.reports == total // every


def test_hf_plateau_refuses_a_scheduler_without_plateau(tmp_path):
    with pytest.raises(LrlabError, match="plateau"):
        _train(tmp_path, "cosine()", 4, eval_steps=2, callbacks=[HFPlateau("loss")],
               eval_losses=EVAL)


def test_hf_plateau_is_a_module_level_class_that_pickles_by_its_name():
    import pickle

    import lrlab.integrations.hf_plateau as module

    assert HFPlateau is module.HFPlateau and HFPlateau.__qualname__ == "HFPlateau"
    copy = pickle.loads(pickle.dumps(HFPlateau(metric="loss")))
    assert type(copy) is HFPlateau and copy.metric == "eval_loss"
