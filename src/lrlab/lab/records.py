"""Run records on disk: a run is a directory.

- ``config.json``: the TrainConfig (written once, atomically).
- ``metrics.jsonl``: one JSON object per epoch, appended and flushed (and fsynced).
- ``checkpoint.pt``: model, optimizer, scheduler, RNG states, position; written to a temp
  file in the same directory and renamed, so a crash never leaves half a checkpoint.
- ``summary.json``: status (running/ok/diverged/not-learning/interrupted/failed), best and
  final test accuracy, time, throughput (atomically replaced).
- ``events.jsonl``: diagnostics as they happen (divergence, not learning, warnings).

Readers are tolerant: a torn last line of a JSONL file (a run killed mid-write) is skipped.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError

__all__ = ["RunRecords", "read_jsonl", "write_json_atomic", "read_json"]


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
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        json.dump(_clean(data), fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LrlabError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LrlabError(f"{path}: corrupt JSON ({exc})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object of a JSONL file; a torn or corrupt line is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


class RunRecords:
    """The files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.events_path = self.path / "events.jsonl"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.summary_path = self.path / "summary.json"

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def append(self, path: Path, row: dict[str, Any]) -> None:
        """Append one JSON line; flushed and fsynced so a kill loses at most this line."""
        line = json.dumps(_clean(row), separators=(",", ":")) + "\n"
        with path.open("a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.append(self.metrics_path, row)

    def event(self, kind: str, message: str, **data: Any) -> None:
        self.append(self.events_path, {"kind": kind, "message": message, **data})

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.events_path)

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep the metrics of epochs < epochs_done (resume redoes the rest); atomic."""
        rows = [r for r in self.metrics() if int(r.get("epoch", -1)) < epochs_done]
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        with tmp.open("w") as fh:
            for r in rows:
                fh.write(json.dumps(_clean(r), separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.metrics_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def summary(self) -> dict[str, Any] | None:
        if not self.summary_path.exists():
            return None
        try:
            return read_json(self.summary_path)
        except LrlabError:
            return None

    # -- checkpoints (torch imported lazily: records can be read without it) --------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        tmp = self.path / ".checkpoint.pt.tmp"
        with tmp.open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.checkpoint_path)

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
