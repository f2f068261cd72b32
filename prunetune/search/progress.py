"""Progress lines while a search runs: trials done of total, failures, front size, time left."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import optuna
from optuna.trial import TrialState

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts finished trials against the budget and prints one line per finished trial."""

    def __init__(self, *, total: int, done: int, echo: Callable[[str], None]) -> None:
        self.total = total
        self.done = done
        self.resumed = done
        self.counts = {TrialState.COMPLETE: 0, TrialState.PRUNED: 0, TrialState.FAIL: 0}
        self.echo = echo
        self.started = time.perf_counter()

    def trial_finished(self, study: optuna.Study, number: int, state: TrialState, metrics: Mapping[str, float]) -> None:
        self.done += 1
        self.counts[state] = self.counts.get(state, 0) + 1
        elapsed = time.perf_counter() - self.started
        ran = self.done - self.resumed
        left = elapsed / ran * (self.total - self.done) if ran else 0.0
        front = len(study.best_trials) if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) else 0
        shown = "  ".join(f"{name} {value:.4g}" for name, value in metrics.items() if name in (study.metric_names or ()))
        self.echo(
            f"[{self.done:>{len(str(self.total))}}/{self.total}] trial {number:<4} {state.name.lower():<8} {shown:<40} "
            f"failed {self.counts[TrialState.FAIL]}  pruned {self.counts[TrialState.PRUNED]}  front {front}  "
            f"{_clock(elapsed)} elapsed, ~{_clock(left)} left"
        )
