"""The one place that touches Optuna's storage: opening it, checking its URL, the study's and
trials' system attributes that samplers keep their state in, and (in `_driver`) the storage a run's
driver writes its trials through.

Optuna keeps system attributes behind the study's private ``_storage``; samplers whose state must
survive processes (generations, populations) read and write them here, so that a change in
Optuna's internals is mended here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers._base import _process_constraints_after_trial
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from prunetune.errors import PrunetuneError
from prunetune.search.storage._driver import DriverStorage

__all__ = [
    "CONSTRAINTS_KEY",
    "DriverStorage",
    "StudyAttrs",
    "check_storage_url",
    "open_readonly",
    "open_storage",
    "params_in_one_write",
    "process_constraints_after_trial",
    "set_trial_user_attr",
    "set_user_attrs",
    "storage_url",
    "trial_id",
    "with_sampler",
]

#: The trial system attribute where Optuna keeps a trial's constraint values.
CONSTRAINTS_KEY = _CONSTRAINTS_KEY
#: Optuna's own step that stores a finished trial's constraints (``constraints_func``).
process_constraints_after_trial = _process_constraints_after_trial


#: The prefix of a JournalStorage file: ``journal:PATH`` (``journal:///abs/path`` works too).
JOURNAL = "journal:"


def _with_driver(url: str) -> str:
    """``postgresql://...`` with the driver prunetune's ``postgres`` extra installs (psycopg 3);
    SQLAlchemy would otherwise look for psycopg2. A URL naming its driver is left as it is."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def _journal_path(url: str) -> Path:
    path = url[len(JOURNAL):]
    return Path(path[2:] if path.startswith("///") else path).expanduser()


def storage_url(run_dir: Path, storage: str | None) -> str:
    """The storage named in the experiment, or SQLite in the run folder."""
    if storage:
        return storage
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def check_storage_url(url: str) -> None:
    """Raise PrunetuneError unless ``url`` is a storage URL whose database driver is installed.

    Only the URL and the driver are checked, not the connection: nothing is created or written.
    ``journal:PATH`` (Optuna's JournalStorage in one file) needs the file's folder to exist.
    """
    url = _with_driver(url)
    if url.startswith(JOURNAL):
        folder = _journal_path(url).parent
        if not folder.is_dir():
            raise PrunetuneError(f"The 'storage' key {url!r} names a journal file in {folder}, which does not exist.")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    accepted = "an Optuna storage URL such as sqlite:///PATH, postgresql://USER@HOST/DB or mysql://USER@HOST/DB"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise PrunetuneError(f"The 'storage' key must be {accepted}. Got {url!r} instead ({error}).") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise PrunetuneError(
            f"The 'storage' key {url!r} needs the database driver {error.name or parsed.drivername!r}, "
            "which is not installed here: install it (for PostgreSQL: pip install 'prunetune[postgres]'), "
            "or use sqlite:///PATH."
        ) from None


def open_storage(url: str) -> str | optuna.storages.BaseStorage:
    """The storage a URL names. SQLite runs in write-ahead-log mode: a commit survives the driver
    being killed, without an fsync on every attribute write (which made the ledger the slowest part
    of a short trial). ``journal:PATH`` is Optuna's JournalStorage in the file PATH."""
    url = _with_driver(url)
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(_journal_path(url))))
    if not url.startswith("sqlite:///"):
        return _create_tables_once(url, {}) if "://" in url else url
    from sqlalchemy import event

    storage = _create_tables_once(url, {"connect_args": {"timeout": 60}})

    @event.listens_for(storage.engine, "connect")
    def _pragmas(connection: Any, record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections made so far predate the pragmas
    return storage


def _create_tables_once(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Open a database storage; when two runs create a new database's tables at the same moment, the
    one that loses the race opens it again, now that they exist."""
    from sqlalchemy.exc import DBAPIError

    races = ("already exists", "UNIQUE constraint failed", "duplicate key value")
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except DBAPIError as error:  # a table, type or alembic version another run created meanwhile
            racing = any(words in str(error) for words in races)
            if not racing or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_readonly(url: str, study_name: str) -> optuna.Study:
    """Load study ``study_name`` to read it while a search may still write it; creates nothing."""
    storage: str | optuna.storages.BaseStorage = _with_driver(url)
    if url.startswith(JOURNAL):
        storage = open_storage(url)
    elif url.startswith("sqlite:///"):  # read a live run: wait out its writes, create no tables
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}, skip_table_creation=True)
    return optuna.load_study(study_name=study_name, storage=storage)


class StudyAttrs:
    """A study's system attributes and those of its trials, fresh from storage (no cache: other
    workers' writes must be visible). ``prefix`` namespaces the keys (``"ScipyDESampler"``)."""

    def __init__(self, study: Study, prefix: str = "") -> None:
        self._study = study
        self._prefix = prefix

    @property
    def identity(self) -> tuple[Any, int]:
        """The storage object and the study's id: equal for every handle on the same stored study in
        this process, and holding the storage so that a new one can never be taken for it."""
        return self._study._storage, self._study._study_id

    @property
    def key_of_study(self) -> tuple[int, int]:
        """A hashable key of the stored study (the storage's ``id``) for caches that keep the storage alive."""
        return id(self._study._storage), self._study._study_id

    def key(self, name: str) -> str:
        return f"{self._prefix}:{name}" if self._prefix else name

    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        return self._study._storage.get_all_trials(self._study._study_id, deepcopy=False, states=states)

    def study_attrs(self) -> dict[str, Any]:
        return self._study._storage.get_study_system_attrs(self._study._study_id)

    def study_attr(self, name: str) -> Any:
        return self.study_attrs().get(self.key(name))

    def set_study_attr(self, name: str, value: Any) -> None:
        self._study._storage.set_study_system_attr(self._study._study_id, self.key(name), value)

    def trial_attrs(self, trial: FrozenTrial | optuna.trial.Trial) -> dict[str, Any]:
        return dict(self._study._storage.get_trial_system_attrs(trial._trial_id))

    def set_trial_attrs(self, trial: FrozenTrial | optuna.trial.Trial, attrs: Mapping[str, Any]) -> None:
        for name, value in attrs.items():
            self._study._storage.set_trial_system_attr(trial._trial_id, self.key(name), value)


def params_in_one_write(study: Study) -> contextlib.AbstractContextManager[None]:
    """Suggestions made inside are written in one transaction (a run's study), or each at once (any other)."""
    storage = study._storage
    return storage.params_in_one_write() if isinstance(storage, DriverStorage) else contextlib.nullcontext()


def set_user_attrs(trial: optuna.trial.Trial, attrs: Mapping[str, Any]) -> None:
    """Write several user attributes of a running trial: in one transaction on a run's database (a
    trial's outcome is about ten attributes, and a commit each made recording it the driver's slowest step)."""
    storage = trial.study._storage
    if isinstance(storage, DriverStorage):
        storage.set_trial_user_attrs(trial_id(trial), attrs)
        return
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def set_trial_user_attr(study: Study, trial: FrozenTrial | optuna.trial.Trial, key: str, value: Any) -> None:
    """Write a user attribute of a running trial from a sampler, which holds only its frozen copy."""
    study._storage.set_trial_user_attr(trial_id(trial), key, value)


def with_sampler(study: Study, sampler: optuna.samplers.BaseSampler) -> Study:
    """Another handle on the same stored study, asking ``sampler`` for its trials."""
    return optuna.load_study(study_name=study.study_name, storage=study._storage, sampler=sampler)


def trial_id(trial: FrozenTrial | optuna.trial.Trial) -> int:
    """The storage's id of a trial: unique across studies, where ``number`` is unique within one."""
    return trial._trial_id
