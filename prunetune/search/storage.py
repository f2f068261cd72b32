"""The one place that touches Optuna's storage: opening it, checking its URL, and the study's and
trials' system attributes that samplers keep their state in.

Optuna keeps system attributes behind the study's private ``_storage``; samplers whose state must
survive processes (generations, populations) read and write them here, so that a change in
Optuna's internals is mended in one module.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import sqlite3
import threading
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers._base import _process_constraints_after_trial
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from prunetune.errors import PrunetuneError

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


class DriverStorage(optuna.storages.BaseStorage):
    """A run's storage as its driver sees it: trials read from memory, every write passed through at once.

    In a run only the driver writes its study's trials (workers report to it), so the storage holds
    exactly what the driver wrote; reading it back was most of the driver's time per trial (an ask, a
    suggestion and a tell read every trial four times and single trials four more, about 6 ms a read
    on SQLite). Writes are synchronous, so a killed driver loses nothing it recorded, and a resumed
    run reads everything once. Study-level calls go to the storage as they are.
    """

    def __init__(self, backend: optuna.storages.BaseStorage) -> None:
        self.backend = backend
        self._lock = threading.RLock()
        self._trials: dict[int, dict[int, FrozenTrial]] = {}  # study id -> trial id -> trial, in creation order
        self._study_of: dict[int, int] = {}  # trial id -> study id
        #: Parameter writes held for one transaction (see `params_in_one_write`); None: written at once.
        self._held: list[tuple[int, str, float, BaseDistribution]] | None = None

    def __getattr__(self, name: str) -> Any:  # what BaseStorage does not define (an RDB storage's engine, ...)
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)

    # Studies: as they are.
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self.backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            for number in self._trials.pop(study_id, {}):
                self._study_of.pop(number, None)
        self.backend.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.backend.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[optuna.study.FrozenStudy]:
        return self.backend.get_all_studies()

    # Trials: read from memory, written through.
    def _study_trials(self, study_id: int) -> dict[int, FrozenTrial]:
        with self._lock:
            if study_id not in self._trials:
                trials = self.backend.get_all_trials(study_id, deepcopy=False)
                self._trials[study_id] = {trial._trial_id: trial for trial in trials}
                self._study_of.update((trial._trial_id, study_id) for trial in trials)
            return self._trials[study_id]

    def _reload(self, trial_id: int) -> None:
        """Read one trial back (after a write whose details the storage fills in: times, state)."""
        with self._lock:
            study_id = self._study_of.get(trial_id)
            if study_id is not None:
                self._trials[study_id][trial_id] = self.backend.get_trial(trial_id)

    def _change(self, trial_id: int, **changes: dict[str, Any]) -> None:
        """Merge ``changes`` into the remembered trial's mappings (a new object: lists handed out stay as they were)."""
        with self._lock:
            study_id = self._study_of.get(trial_id)
            if study_id is None:
                return
            trial = copy.deepcopy(self._trials[study_id][trial_id])
            for name, update in changes.items():
                setattr(trial, name, {**getattr(trial, name), **update})
            self._trials[study_id][trial_id] = trial

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._write_held()
        backend = self.backend
        if isinstance(backend, optuna.storages.RDBStorage):  # the new row as written, without reading it back
            trial = backend._create_new_trial(study_id, template_trial)
        else:
            trial = backend.get_trial(backend.create_new_trial(study_id, template_trial))
        with self._lock:
            if study_id in self._trials:
                self._trials[study_id][trial._trial_id] = trial
                self._study_of[trial._trial_id] = study_id
        return trial._trial_id

    @contextlib.contextmanager
    def params_in_one_write(self) -> Iterator[None]:
        """Hold the parameter writes made inside, and write them in one transaction at its end (a
        trial's suggestions were a commit each). Any other write writes them first."""
        with self._lock:
            self._held = []
            try:
                yield
            finally:
                self._write_held()
                self._held = None

    def _write_held(self) -> None:
        with self._lock:
            held, backend = self._held, self.backend
            if not held:
                return
            self._held = []
            if isinstance(backend, optuna.storages.RDBStorage):
                from optuna.storages._rdb.storage import _create_scoped_session

                with _create_scoped_session(backend.scoped_session, True) as session:
                    for trial_id, name, value, distribution in held:
                        backend._set_trial_param_without_commit(session, trial_id, name, value, distribution)
            else:
                for trial_id, name, value, distribution in held:
                    backend.set_trial_param(trial_id, name, value, distribution)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append((trial_id, param_name, param_value_internal, distribution))
            else:
                self.backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._change(trial_id, params={param_name: distribution.to_external_repr(param_value_internal)},
                     distributions={param_name: distribution})

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        self._write_held()
        changed = self.backend.set_trial_state_values(trial_id, state, values)
        self._reload(trial_id)  # as the storage now holds it: its end time, or a waiting trial another process took
        return changed

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._write_held()
        self.backend.set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._reload(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write_held()
        self.backend.set_trial_user_attr(trial_id, key, value)
        self._change(trial_id, user_attrs={key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Several user attributes in one transaction on a database (one write each elsewhere)."""
        self._write_held()
        backend = self.backend
        if isinstance(backend, optuna.storages.RDBStorage) and attrs:
            from optuna.storages._rdb.storage import _create_scoped_session

            with _create_scoped_session(backend.scoped_session, True) as session:
                _upsert_user_attrs(backend, session, trial_id, attrs)
        else:
            for key, value in attrs.items():
                backend.set_trial_user_attr(trial_id, key, value)
        self._change(trial_id, user_attrs=dict(attrs))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write_held()
        self.backend.set_trial_system_attr(trial_id, key, value)
        self._change(trial_id, system_attrs={key: value})

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            study_id = self._study_of.get(trial_id)
            if study_id is not None:
                return self._trials[study_id][trial_id]
        return self.backend.get_trial(trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = list(self._study_trials(study_id).values())
        if states is not None:
            trials = [trial for trial in trials if trial.state in states]
        return copy.deepcopy(trials) if deepcopy else trials


def _upsert_user_attrs(backend: optuna.storages.RDBStorage, session: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Write ``attrs`` in one statement where the database can (SQLite, PostgreSQL): Optuna's own path
    reads the trial again before each attribute, two statements an attribute."""
    from optuna.storages._rdb import models

    engine = backend.engine.name
    if engine not in ("sqlite", "postgresql") or (engine == "sqlite" and sqlite3.sqlite_version_info < (3, 24, 0)):
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)
        return
    trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
    backend.check_trial_is_updatable(trial_id, trial.state)
    dialect = importlib.import_module(f"sqlalchemy.dialects.{engine}")
    model = models.TrialUserAttributeModel
    insert = dialect.insert(model).values([{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()])
    session.execute(insert.on_conflict_do_update(index_elements=[model.trial_id, model.key], set_={"value_json": insert.excluded.value_json}))


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
