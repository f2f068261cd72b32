"""The storage a run's driver opens: its study's trials kept in memory, every write passed through at once.

On SQLite and PostgreSQL the driver also writes a trial's rows itself, in one statement each where
Optuna's own path reads the trial and its neighbours back before every write; both databases keep
what is written exactly (floats, microsecond times), so memory and database stay equal.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import sqlite3
import threading
from collections.abc import Container, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["DriverStorage"]

#: Databases that keep exactly what is written (floats, microsecond times) and have an upsert (SQLite
#: from 3.24): the driver writes rows itself.
EXACT_DATABASES = ("sqlite", "postgresql")


class _NotAsRemembered(Exception):
    """The database's row is not in the state the driver remembers: Optuna's own path decides."""


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
        #: Per study, each parameter's first distribution: a new one must be compatible with it.
        self._distributions: dict[int, dict[str, BaseDistribution]] = {}
        engine = getattr(backend, "engine", None) if isinstance(backend, optuna.storages.RDBStorage) else None
        #: The driver writes a trial's rows itself (see the module's docstring).
        self.writes_rows = engine is not None and engine.name in EXACT_DATABASES and (
            engine.name != "sqlite" or sqlite3.sqlite_version_info >= (3, 24)
        )

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
                known = self._distributions.setdefault(study_id, {})
                for trial in trials:
                    for name, distribution in trial.distributions.items():
                        known.setdefault(name, distribution)
            return self._trials[study_id]

    def _remembered(self, trial_id: int) -> FrozenTrial | None:
        with self._lock:
            study_id = self._study_of.get(trial_id)
            return None if study_id is None else self._trials[study_id][trial_id]

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
            if self.writes_rows:
                _insert_params(backend, held)
            elif isinstance(backend, optuna.storages.RDBStorage):
                from optuna.storages._rdb.storage import _create_scoped_session

                with _create_scoped_session(backend.scoped_session, True) as session:
                    for trial_id, name, value, distribution in held:
                        backend._set_trial_param_without_commit(session, trial_id, name, value, distribution)
            else:
                for trial_id, name, value, distribution in held:
                    backend.set_trial_param(trial_id, name, value, distribution)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution) -> None:
        with self._lock:
            remembered = self._remembered(trial_id)
            direct = self.writes_rows and remembered is not None
            if direct:  # Optuna's checks, on what the driver remembers instead of what it reads back
                self.backend.check_trial_is_updatable(trial_id, remembered.state)
                known = self._distributions.setdefault(self._study_of[trial_id], {})
                if param_name in known:
                    check_distribution_compatibility(known[param_name], distribution)
                known.setdefault(param_name, distribution)
            if self._held is not None and (direct or not self.writes_rows):  # held rows are checked rows
                self._held.append((trial_id, param_name, param_value_internal, distribution))
            elif direct:
                _insert_params(self.backend, [(trial_id, param_name, param_value_internal, distribution)])
            else:
                self.backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._change(trial_id, params={param_name: distribution.to_external_repr(param_value_internal)},
                     distributions={param_name: distribution})

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        self._write_held()
        remembered = self._remembered(trial_id)
        if self.writes_rows and remembered is not None and remembered.state == TrialState.RUNNING and state.is_finished():
            with contextlib.suppress(_NotAsRemembered):
                finished = _finish(self.backend, trial_id, state, values)
                trial = copy.deepcopy(remembered)
                trial.state, trial.values, trial.datetime_complete = state, list(values) if values else None, finished
                with self._lock:
                    self._trials[self._study_of[trial_id]][trial_id] = trial
                return True
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
        """Several user attributes in one statement where the driver writes rows, one transaction on
        any other database, one write each elsewhere."""
        self._write_held()
        backend, remembered = self.backend, self._remembered(trial_id)
        if self.writes_rows and remembered is not None and attrs:
            backend.check_trial_is_updatable(trial_id, remembered.state)
            _upsert_user_attrs(backend, trial_id, attrs)
        elif isinstance(backend, optuna.storages.RDBStorage) and attrs:
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session

            with _create_scoped_session(backend.scoped_session, True) as session:
                for key, value in attrs.items():
                    backend._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)
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


def _upsert_user_attrs(backend: optuna.storages.RDBStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """A trial's user attributes in one statement (Optuna's own path reads the trial again before
    each attribute, two statements an attribute)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    dialect = importlib.import_module(f"sqlalchemy.dialects.{backend.engine.name}")
    model = models.TrialUserAttributeModel
    insert = dialect.insert(model).values([{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()])
    with _create_scoped_session(backend.scoped_session) as session:
        session.execute(insert.on_conflict_do_update(index_elements=[model.trial_id, model.key], set_={"value_json": insert.excluded.value_json}))


def _insert_params(backend: optuna.storages.RDBStorage, params: Sequence[tuple[int, str, float, BaseDistribution]]) -> None:
    """A trial's parameter rows in one statement (checked by the caller, as Optuna checks them)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import insert

    rows = [
        {"trial_id": trial_id, "param_name": name, "param_value": value, "distribution_json": distribution_to_json(distribution)}
        for trial_id, name, value, distribution in params
    ]
    with _create_scoped_session(backend.scoped_session) as session:
        session.execute(insert(models.TrialParamModel.__table__), rows)


def _finish(backend: optuna.storages.RDBStorage, trial_id: int, state: TrialState, values: Sequence[float] | None) -> datetime:
    """End a running trial: its state and end time in one statement, its values in one more; the end
    time is returned, as the database now holds it. Raises `_NotAsRemembered` (writing nothing) when
    the row is not running."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import insert, update

    # Stored in UTC and read back in local time, as Optuna's own model does.
    stored_time = datetime.now(timezone.utc).replace(tzinfo=None)
    finished = stored_time.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
    trial = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        ended = session.execute(
            update(trial)
            .where(trial.trial_id == trial_id, trial.state == TrialState.RUNNING)
            .values({trial.state: state, trial._datetime_complete_utc: stored_time})
            .execution_options(synchronize_session=False)
        )
        if ended.rowcount != 1:
            raise _NotAsRemembered(trial_id)
        if values:
            stored = [models.TrialValueModel.value_to_stored_repr(value) for value in values]
            session.execute(
                insert(models.TrialValueModel.__table__),
                [{"trial_id": trial_id, "objective": objective, "value": value, "value_type": kind} for objective, (value, kind) in enumerate(stored)],
            )
    return finished
