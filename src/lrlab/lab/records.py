"""Run records on disk: a run is a directory.

- ``config.json``: the TrainConfig (written once, atomically).
- ``metrics.jsonl``: one JSON object per epoch, appended and flushed (and fsynced).
- ``checkpoint.pt``: model, optimizer, scheduler, RNG states, position; written to a temp
  file in the same directory and renamed, so a crash never leaves half a checkpoint.
- ``summary.json``: status (running/ok/diverged/not-learning/pruned/interrupted/failed), best
  and final test accuracy, time, throughput (atomically replaced).
- ``events.jsonl``: diagnostics as they happen (divergence, not learning, warnings).

What stopped a diverged run (:class:`Divergence`) is written twice: as the fields of its
``diverged`` event and as ``summary.json``'s ``diverged_at``.

Readers skip a torn last line of a JSONL file (a run killed mid-write) and refuse, with one
line naming the file, anything else that is not what lrlab writes: a JSON value of the wrong
type, a metrics row without an integer epoch, epochs out of order.

One writer per run: a process that trains a run holds ``RunLock`` on ``.lock`` in its
directory; a second writer is refused, naming the holder's pid.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.files import atomic_file

__all__ = ["RunRecords", "RunLock", "read_jsonl", "write_json_atomic", "read_json",
           "check_metrics", "FINISHED", "Divergence"]


def _clean(obj: Any) -> Any:
    """JSON cannot hold NaN/inf portably: write them as strings "nan", "inf", "-inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written whole or not at all (``lrlab.files.atomic_file``)."""
    with atomic_file(path) as fh:
        json.dump(_clean(data), fh, indent=2, sort_keys=False)
        fh.write("\n")


def read_json(path: Path, kind: type | None = None) -> Any:
    """The JSON value of ``path``; with ``kind``, LrlabError unless it is of that type."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LrlabError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LrlabError(f"{path}: corrupt JSON ({exc})") from None
    except OSError as exc:
        raise LrlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if kind is not None and not isinstance(data, kind):
        raise LrlabError(f"{path}: expected a JSON {'object' if kind is dict else kind.__name__}"
                         f", found a {type(data).__name__}")
    return data


def read_jsonl(path: Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per line.

    A torn last line (a process killed while appending it) is skipped. Any other line that is
    not a JSON object is skipped too, unless ``strict``: then it is an LrlabError naming the
    file and the line.
    """
    if not path.exists():
        return []
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise LrlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    lines = text.split("\n")
    torn = len(lines) - 1  # index of the text after the last newline (empty when complete)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            rows.append(obj)
        elif strict and i != torn:
            raise LrlabError(f"{path}: line {i + 1} is not a JSON object ({line[:60]!r})")
    return rows


def check_metrics(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each epoch once, in order from 0, with an integer ``epoch``; else LrlabError."""
    for i, row in enumerate(rows):
        epoch = row.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise LrlabError(f"{path}: row {i + 1} has epoch {epoch!r}, expected a whole number")
        if epoch != i:
            raise LrlabError(f"{path}: row {i + 1} is epoch {epoch}, expected {i} (each epoch "
                             "once, in order): was the run written by two processes?")
    return rows


def _number(value: Any) -> float | None:
    """A recorded number as a float ("nan"/"inf" strings too, see ``_clean``); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Divergence:
    """What stopped a diverged run, as its records hold it.

    ``cause`` is ``nonfinite`` (a NaN/inf update loss), ``explosion`` (an update loss far
    above the first one's), ``nonfinite-eval`` (a NaN/inf evaluation loss; ``metric`` names
    it: ``test_loss`` or ``val_loss``) or ``collapse`` (back at chance level after learning;
    see ``lrlab.lab.train.health``). ``epoch`` is 0-based; ``update`` counts the run's
    updates (None when a collapse could not be dated); ``lr`` is the LR of that update (or
    epoch); ``loss`` the loss that gave it away; ``loss_before`` the train loss of the epoch
    before (None in the first epoch).

    A record written by lrlab has every field but ``metric`` (only ``nonfinite-eval``) and
    ``loss_before``; one read back from older records may lack any (None).
    """

    cause: str | None
    epoch: int | None
    update: int | None
    lr: float | None
    loss: float | None
    loss_before: float | None = None
    metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the records: keys ``cause, epoch, update, lr, loss``, then
        ``metric`` when there is one, then ``loss_before``, in that order."""
        out: dict[str, Any] = {"cause": self.cause, "epoch": self.epoch, "update": self.update,
                               "lr": self.lr, "loss": self.loss}
        if self.metric is not None:
            out["metric"] = self.metric
        out["loss_before"] = self.loss_before
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Divergence:
        """Read a record (``summary["diverged_at"]`` or a ``diverged`` event's fields).

        Tolerant of what older lrlab versions wrote: the cause under ``kind`` (an early
        draft) or missing, numbers as the strings "nan"/"inf", missing fields (None). Keys
        it does not know are ignored; an event's own ``kind`` and ``message`` are not the
        record's, so leave them out."""
        cause = data.get("cause", data.get("kind"))
        epoch, update, metric = data.get("epoch"), data.get("update"), data.get("metric")
        return cls(
            cause=str(cause) if cause is not None else None,
            epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
            update=update if isinstance(update, int) and not isinstance(update, bool) else None,
            lr=_number(data.get("lr")), loss=_number(data.get("loss")),
            loss_before=_number(data.get("loss_before")),
            metric=str(metric) if metric is not None else None)


LOCK_NAME = ".lock"
#: The statuses of a run that trained to its end (ok), or stopped for good.
FINISHED = ("ok", "diverged", "not-learning", "pruned")


class RunLock:
    """The one-writer lock of a run directory: ``fcntl.flock`` on ``.lock`` inside it.

    The kernel releases the lock when the holder exits, however it dies, so there are no
    stale locks; the file holds the holder's pid, to name it. ``acquire(wait=s)`` retries for
    up to ``s`` seconds (a comparison's worker waiting for a killed predecessor to finish its
    checkpoint), then gives up with an LrlabError naming the holder.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        import fcntl
        import time

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise LrlabError(f"{self.path.parent} is being trained by process {holder}; "
                                     "wait for it to finish, or stop it first") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class RunRecords:
    """The files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.events_path = self.path / "events.jsonl"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.summary_path = self.path / "summary.json"
        self.lock = RunLock(self.path)

    def exists(self) -> bool:
        return self.config_path.exists()

    def check_ours(self) -> None:
        """LrlabError unless the directory is absent, empty, or an lrlab run (never write
        into another tool's directory)."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise LrlabError(f"{self.path} exists and is not a directory")
        if self.exists():
            return
        # our runs write config.json before anything else: without it, any file is foreign
        foreign = sorted(p.name for p in self.path.iterdir() if not p.name.startswith("."))
        if foreign:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise LrlabError(f"{self.path} exists and is not an lrlab run (it holds {shown}); "
                             "choose another --out or --name")

    def create(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_path, dict)

    def append(self, path: Path, row: dict[str, Any]) -> None:
        """Append one JSON line; flushed and fsynced so a kill loses at most this line.

        When the file does not end with a newline (a line torn by a kill, or text appended by
        something else) the row starts on a line of its own, never glued onto that text.
        """
        line = json.dumps(_clean(row), separators=(",", ":")) + "\n"
        with path.open("a+b") as fh:
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.append(self.metrics_path, row)

    def event(self, kind: str, message: str, **data: Any) -> None:
        self.append(self.events_path, {"kind": kind, "message": message, **data})

    def metrics(self) -> list[dict[str, Any]]:
        """The epoch rows, validated (``check_metrics``); a torn last line is skipped."""
        return check_metrics(self.metrics_path, read_jsonl(self.metrics_path, strict=True))

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.events_path)

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep the metrics of epochs < epochs_done (resume redoes the rest); atomic."""
        rows = self.metrics()
        if len(rows) < epochs_done:
            raise LrlabError(f"{self.metrics_path} holds {len(rows)} epochs but the checkpoint "
                             f"is at epoch {epochs_done}: the run's records are incomplete "
                             "(was metrics.jsonl deleted or cut?); start a new run")
        with atomic_file(self.metrics_path) as fh:
            for r in rows[:epochs_done]:
                fh.write(json.dumps(_clean(r), separators=(",", ":")) + "\n")

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None when there is none yet; LrlabError when it is damaged."""
        if not self.summary_path.exists():
            return None
        return read_json(self.summary_path, dict)

    # -- checkpoints (torch imported lazily: records can be read without it) --------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        # a full disk, a second Ctrl-C: the old checkpoint stays whole
        with atomic_file(self.checkpoint_path, "wb") as fh:
            torch.save(state, fh)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint, loaded as data only (``torch.load(..., weights_only=True)``).

        A checkpoint holds tensors, numbers, strings, lists, tuples and dicts; anything else
        (a pickled object, i.e. code) is refused before it runs, as is a file that is not a
        checkpoint of ours. Returns None when there is no checkpoint.
        """
        import pickle

        import torch

        if not self.checkpoint_path.exists():
            return None
        try:
            with warnings.catch_warnings():  # torch warns about foreign pickle protocols
                warnings.simplefilter("ignore")
                state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            what = next((line.strip() for line in str(exc).splitlines()
                         if "Unsupported" in line), "")
            raise LrlabError(f"{self.checkpoint_path}: refused: it holds more than tensors and "
                             f"plain data, which lrlab never writes; nothing in it was run "
                             f"({what[:160] or 'weights-only load failed'})") from None
        except Exception as exc:  # a corrupt file: say so, never crash with a traceback
            raise LrlabError(f"{self.checkpoint_path}: cannot read checkpoint "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") \
                from None
        _check_checkpoint(self.checkpoint_path, state)
        return state


#: The entries a trainer checkpoint holds, and their types.
CHECKPOINT_KEYS: dict[str, tuple[type, ...]] = {
    "epoch": (int,), "update": (int,), "elapsed": (float, int), "model": (dict,),
    "optimizer": (dict,), "scheduler": (dict,), "rng": (dict,),
}


def _check_checkpoint(path: Path, state: Any) -> None:
    if not isinstance(state, dict):
        raise LrlabError(f"{path}: not an lrlab checkpoint (it holds a "
                         f"{type(state).__name__}, not a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise LrlabError(f"{path}: not an lrlab checkpoint (no {', '.join(missing)})")
    for key, types in CHECKPOINT_KEYS.items():
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise LrlabError(f"{path}: entry {key!r} is a {type(value).__name__}, expected "
                             f"{' or '.join(t.__name__ for t in types)}")
    if state["epoch"] < 0 or state["update"] < 0:
        raise LrlabError(f"{path}: negative position (epoch {state['epoch']}, update "
                         f"{state['update']})")


# -- comparison directories ---------------------------------------------------------------------
# What a comparison writes next to its runs and what a report reads back: the plan
# (``comparison.json``, written by :mod:`lrlab.lab.compare`) is part of the same on-disk
# contract as the run records above, so reports need not import the comparison code.
__all__ += ["COMPARISON_FILE", "COMPARISON_FILES", "read_comparison"]

#: The plan of a comparison, in its directory.
COMPARISON_FILE = "comparison.json"
#: What a comparison directory of ours holds, besides the figures (``*.png``).
COMPARISON_FILES = (COMPARISON_FILE, "runs", "logs", "report.md", "report.html", "summary.csv")


def read_comparison(directory: Path) -> dict[str, Any]:
    """``comparison.json`` of ``directory``, checked: LrlabError naming what is wrong."""
    path = directory / COMPARISON_FILE
    meta = read_json(path, dict)
    runs = meta.get("runs")
    if not isinstance(runs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"]
            and isinstance(r.get("label"), str) for r in runs):
        raise LrlabError(f"{path}: 'runs' must be a list of objects with a name and a label")
    for r in runs:
        if r["name"] in (".", "..") or "/" in r["name"] or "\\" in r["name"]:
            raise LrlabError(f"{path}: run name {r['name']!r} is not a directory name")
        seed = r.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise LrlabError(f"{path}: run {r['name']!r} has seed {seed!r}, expected an integer")
    for key, kind in (("labels", list), ("notes", list), ("contrasts", list),
                      ("failures", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise LrlabError(f"{path}: {key!r} must be a {'list' if kind is list else 'object'}"
                             f", found a {type(meta[key]).__name__}")
    for entry in meta.get("labels") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise LrlabError(f"{path}: each of 'labels' must be an object with a label")
    for key in ("title", "source", "trace", "baseline"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise LrlabError(f"{path}: {key!r} must be a string")
    return meta
