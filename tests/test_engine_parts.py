"""Small parts of the engine that the Ray tests only reach through whole searches: the outcome
written in one transaction, and the generation gate's answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import optuna
import pytest

from prunetune.search._gate import Gate
from prunetune.search.storage import open_storage, set_user_attrs

ATTRS = {"plan": {"sections": {"filters": {"ratios": {"a": 0.5}}}}, "metrics": {"accuracy": 0.9}, "node": "n1", "attempts": 2}


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_set_user_attrs_writes_them_all_on_any_storage(kind: str, tmp_path: Path) -> None:
    storage = {
        "sqlite": lambda: open_storage(f"sqlite:///{tmp_path / 'study.db'}"),
        "journal": lambda: open_storage(f"journal:{tmp_path / 'study.log'}"),
        "memory": lambda: None,
    }[kind]()
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    set_user_attrs(trial, ATTRS)
    study.tell(trial, 1.0)
    reread = optuna.load_study(study_name="s", storage=storage) if storage is not None else study
    assert reread.trials[0].user_attrs == ATTRS


def test_set_user_attrs_refuses_a_finished_trial_and_writes_none_of_them(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError, match="finished"):
        set_user_attrs(trial, ATTRS)
    assert optuna.load_study(study_name="s", storage=storage).trials[0].user_attrs == {}


def test_the_gate_answers_a_waiting_trial_when_its_generation_opens() -> None:
    async def scenario() -> tuple[int, int, float, int]:
        gate = Gate()
        open_now = await gate.wait(-1, 5.0)  # generation -1 is open from the start
        timed_out = await gate.wait(1, 0.05)  # closed: it comes back after the timeout, still closed
        waiter = asyncio.create_task(gate.wait(1, 5.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = time.monotonic()
        await gate.set(0)  # not yet its generation: it keeps waiting
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await gate.set(1)
        answer = await waiter
        return open_now, timed_out, time.monotonic() - started, answer

    open_now, timed_out, seconds, answer = asyncio.run(scenario())
    assert open_now == -1 and timed_out == -1
    assert answer == 1 and seconds < 1.0  # answered on opening, not after the 5 s timeout
