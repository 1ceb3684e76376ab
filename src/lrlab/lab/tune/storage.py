"""Where an ``lrlab tune`` study lives: Optuna storages, opened with heartbeats and retries.

- no URL: a SQLite file ``study.db`` in the output directory (one machine; re-running the
  same command continues the study);
- ``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DB``, ``mysql://...``: Optuna's
  ``RDBStorage`` (SQLAlchemy URLs), shared by every worker that can reach it;
- ``journal:PATH``: Optuna's ``JournalStorage`` on a file, for workers that share a file
  system but no database server.

Every storage gets a heartbeat: a running trial records that its worker is alive every
``heartbeat`` seconds, and a trial whose worker has been silent for ``3 × heartbeat`` seconds
(killed, its machine gone) is marked failed by the next worker that looks, which puts a
copy of it (same parameters, a new trial number) back in the queue
(``RetryHeartbeatStaleTrialCallback``). A trial is therefore never lost and never counted
twice. RDB storages have this built in; for the journal file it is added here
(:class:`HeartbeatJournalStorage`, the heartbeat kept as a trial system attribute), which
needs the workers' clocks to agree to well under the grace period.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lrlab.errors import LrlabError

__all__ = ["open_storage", "check_storage", "storage_file", "storage_label",
           "HeartbeatJournalStorage", "MAX_RETRY", "quiet_optuna"]

#: how many times a trial whose worker died is tried again
MAX_RETRY = 2
_HEARTBEAT_ATTR = "lrlab:heartbeat"


def storage_label(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and reports)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def quiet_optuna() -> None:
    """Optuna's experimental-feature warnings and its per-trial INFO/WARNING lines off: lrlab
    prints its own line per trial, and a trial's error is lrlab's one-line error."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _retry() -> Callable[..., None]:
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    quiet_optuna()
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def _heartbeat_journal_class() -> type:
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class _HeartbeatJournal(JournalStorage, BaseHeartbeat):
        """JournalStorage with heartbeats kept as trial system attributes."""

        def __init__(self, backend: Any, interval: int, grace: int,
                     callback: Callable[..., None]) -> None:
            super().__init__(backend)
            self._lrlab_interval = interval
            self._lrlab_grace = grace
            self._lrlab_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for t in self.get_all_trials(study_id, deepcopy=False,
                                         states=(TrialState.RUNNING,)):
                beat = t.system_attrs.get(_HEARTBEAT_ATTR)
                if beat is None and t.datetime_start is not None:
                    beat = t.datetime_start.timestamp()
                if beat is not None and now - float(beat) > self._lrlab_grace:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._lrlab_interval

        def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
            return self._lrlab_callback

    return _HeartbeatJournal


def HeartbeatJournalStorage(path: str | Path, heartbeat: int = 30) -> Any:  # noqa: N802
    """A journal-file storage whose running trials send heartbeats (see the module doc)."""
    from optuna.storages.journal import JournalFileBackend

    cls = _heartbeat_journal_class()
    return cls(JournalFileBackend(str(path)), heartbeat, 3 * heartbeat, _retry())


def check_storage(url: str | None, heartbeat: int = 30) -> str:
    """Check ``url`` (None: the default ``OUT/study.db``) and ``heartbeat`` without opening,
    creating or writing anything, and return the label safe to print: the URL's form first,
    then the file system paths it names (a journal file that is a directory, a parent
    directory that does not exist), in that order whatever order the flags came in.

    Raises:
        LrlabError: one line, the password never shown.
    """
    if heartbeat < 1:
        raise LrlabError(f"--heartbeat must be at least 1 second, got {heartbeat}")
    if url is None:
        return ""
    label = storage_label(url)
    journal = _journal_path(url)
    if journal is not None:
        if not str(journal) or str(journal) == ".":
            raise LrlabError(f"--storage {label}: give a file, journal:PATH")
    else:
        scheme = url.partition(":")[0].lower()
        if not scheme.startswith(("sqlite", "postgresql", "mysql")) or "://" not in url:
            raise LrlabError(f"--storage {label}: expected sqlite:///PATH, "
                             "postgresql://USER@HOST:PORT/DB, mysql://... or journal:PATH")
    # the form is right: now the paths it names
    if journal is not None:
        if journal.is_dir():
            raise LrlabError(f"--storage {label}: {journal} is a directory, not a journal "
                             "file")
        if not journal.parent.is_dir():
            raise LrlabError(f"--storage {label}: directory {journal.parent} does not exist")
        return label
    path = _sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise LrlabError(f"--storage {label}: directory {path.parent} does not exist")
    return label


def _journal_path(url: str) -> Path | None:
    """The file of a ``journal:PATH`` URL; None for any other URL."""
    if not url.startswith("journal:"):
        return None
    return Path(url[len("journal:"):].removeprefix("//"))


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL; None for in-memory and other URLs."""
    if not url.partition(":")[0].lower().startswith("sqlite"):
        return None
    path = url.partition(":///")[2].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def storage_file(url: str) -> tuple[str, Path] | None:
    """("journal" or "sqlite", the file) of a storage kept in one file, made absolute; None
    for a database server (or an in-memory SQLite). Reads nothing but the path's links."""
    journal = _journal_path(url)
    if journal is not None:
        return "journal", journal.resolve()
    path = _sqlite_path(url)
    return ("sqlite", path.resolve()) if path is not None else None


def open_storage(url: str | None, out: Path, heartbeat: int = 30) -> tuple[Any, str]:
    """The storage for ``url`` (None: ``out/study.db``) and a label safe to print.

    Everything :func:`check_storage` checks is checked first, before anything is created.

    Raises:
        LrlabError: an unknown scheme, a missing database driver, or a server that cannot
            be reached or refuses us; one line, the password never shown.
    """
    check_storage(url, heartbeat)
    if url is None:
        out.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    label = storage_label(url)
    journal = _journal_path(url)
    if journal is not None:
        try:
            return HeartbeatJournalStorage(journal, heartbeat), label
        except (OSError, ValueError) as exc:
            raise LrlabError(f"--storage {label}: {_first_line(exc)}") from None
    scheme = url.partition(":")[0].lower()
    from optuna.storages import RDBStorage

    kwargs: dict[str, Any] = {}
    if scheme.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(_CREATE_TRIES):
        try:
            storage = RDBStorage(url, engine_kwargs=kwargs or None,
                                 heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                                 heartbeat_stale_trial_callback=_retry())
            break
        except Exception as exc:
            # workers started together race to create Optuna's tables in an empty database:
            # the loser sees a duplicate; the tables are there a moment later
            racing = any(w in str(exc) for w in ("already exists", "duplicate key",
                                                 "UniqueViolation", "IntegrityError"))
            if racing and attempt + 1 < _CREATE_TRIES:
                time.sleep(0.5 * (attempt + 1))
                continue
            _refuse(exc, scheme, label)
    return storage, label


#: attempts at opening an RDB storage whose tables another worker is creating
_CREATE_TRIES = 5


def _refuse(exc: Exception, scheme: str, label: str) -> NoReturn:
    """One line for a storage that cannot be opened (SQLAlchemy's first line names why)."""
    if isinstance(exc, ModuleNotFoundError) or "DB access module" in str(exc):
        driver = {"postgresql": "'psycopg[binary]'", "mysql": "PyMySQL"}.get(
            scheme.split("+")[0], "the driver SQLAlchemy names for it")
        raise LrlabError(f"--storage {label}: the database driver is not installed "
                         f"(pip install {driver})") from None
    raise LrlabError(f"--storage {label}: cannot open the study storage: "
                     f"{_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[0].split())
    text = re.sub(r"\(Background on this error.*", "", text).strip()
    return storage_label(text)[:300] or type(exc).__name__
