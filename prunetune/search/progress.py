"""Progress lines while a search runs: trials done of total, failures, front size, time left."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import optuna
from optuna.trial import TrialState

from prunetune.search.ledger import is_feasible
from prunetune.search.pareto import nondominated_mask

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts finished trials against the budget and prints one line per finished trial.

    The front size is kept from the values it is shown, not re-read from the storage each time.
    """

    def __init__(self, *, total: int, done: int, echo: Callable[[str], None], study: optuna.Study | None = None) -> None:
        self.total = total
        self.done = done
        self.resumed = done
        self.counts = {TrialState.COMPLETE: 0, TrialState.PRUNED: 0, TrialState.FAIL: 0}
        self.echo = echo
        self.started = time.perf_counter()
        self.front_values: list[Sequence[float]] = []
        self._layout: tuple[list[str], list[str]] | None = None
        if study is not None:
            completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            self.front_values = [t.values for t in completed if is_feasible(t)]

    def trial_finished(
        self, study: optuna.Study, number: int, state: TrialState, metrics: Mapping[str, float], *, feasible: bool = True
    ) -> None:
        self.done += 1
        self.counts[state] = self.counts.get(state, 0) + 1
        if self._layout is None:  # the study's metric names and directions: read once, they never change
            self._layout = (study.metric_names or [], [d.name.lower() for d in study.directions])
        names, directions = self._layout
        if state == TrialState.COMPLETE and feasible and names and all(name in metrics for name in names):
            self.front_values.append([metrics[name] for name in names])
        if self.front_values:
            mask = nondominated_mask(self.front_values, directions)
            self.front_values = [v for v, keep in zip(self.front_values, mask, strict=True) if keep]
        elapsed = time.perf_counter() - self.started
        ran = self.done - self.resumed
        left = elapsed / ran * (self.total - self.done) if ran else 0.0
        shown = "  ".join(f"{name} {metrics[name]:.4g}" for name in names if name in metrics)
        self.echo(
            f"[{self.done:>{len(str(self.total))}}/{self.total}] trial {number:<4} {state.name.lower():<8} {shown:<40} "
            f"failed {self.counts[TrialState.FAIL]}  pruned {self.counts[TrialState.PRUNED]}  "
            f"front {len(self.front_values)}  {_clock(elapsed)} elapsed, ~{_clock(left)} left"
        )
