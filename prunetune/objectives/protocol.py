"""The custom-objective protocol: what a search calls in each trial, and how a user's own is loaded.

An objective is any callable ``objective(plan, report) -> metrics``:

- ``plan`` is a :class:`~prunetune.pruners.Plan` (plain data naming layers by module path);
- ``report`` is ``None`` or a callable ``report(step, values)`` for intermediate values (say after
  each fine-tuning epoch, with step 0 before fine-tuning starts). The search may stop a trial from
  inside ``report`` by raising; an objective lets that exception through;
- ``metrics`` maps metric names to finite floats;

and it carries ``directions``: a mapping from every metric name it can return to ``"maximize"``
or ``"minimize"``. A plain function works too, with its directions given in the experiment file.

An objective may also offer ``take_model()``: the model its last call measured (or None), so a
search with ``objective.keep_weights`` saves exactly the evaluated weights for export.

An objective must be picklable, because parallel searches ship it to worker processes once:
keep models and data as plain attributes, with no open files, threads or lambdas.
:class:`~prunetune.objectives.classification.ClassificationObjective` is the built-in one, and
``examples/custom_objective.py`` shows one that wraps it and adds a metric.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from prunetune.errors import PrunetuneError, is_finite_number
from prunetune.pruners import Plan
from prunetune.user_code import accepted_keywords, load_reference

__all__ = [
    "DIRECTION_NAMES",
    "Direction",
    "FunctionObjective",
    "Objective",
    "Report",
    "check_directions",
    "check_metrics",
    "load_objective",
]

Direction = Literal["maximize", "minimize"]
DIRECTION_NAMES: tuple[str, ...] = ("maximize", "minimize")

#: ``report(step, values)``: intermediate values of a running trial, by step.
Report = Callable[[int, Mapping[str, float]], None]


@runtime_checkable
class Objective(Protocol):
    """What a search calls in each trial."""

    directions: Mapping[str, str]

    def __call__(self, plan: Plan, report: Report | None = None) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class FunctionObjective:
    """A plain function made into an :class:`Objective` by the directions given next to it.

    Attributes:
        function: ``function(plan, report) -> metrics``.
        directions: Every metric name it can return, to ``"maximize"`` or ``"minimize"``.
    """

    function: Callable[..., Mapping[str, float]]
    directions: Mapping[str, str]

    def __call__(self, plan: Plan, report: Report | None = None) -> Mapping[str, float]:
        return self.function(plan, report)


def check_directions(directions: Any, *, owner: str = "the objective") -> dict[str, str]:
    """``directions`` as a plain dict, or PrunetuneError naming the first bad entry."""
    if not isinstance(directions, Mapping) or not directions:
        raise PrunetuneError(
            f"The directions of {owner} must be a non-empty mapping of metric names to "
            f"'maximize' or 'minimize'. Got {directions!r} instead."
        )
    checked = {}
    for name, direction in directions.items():
        if not isinstance(name, str) or not name:
            raise PrunetuneError(f"The directions of {owner} must be keyed by metric names. Got {name!r} instead.")
        if direction not in DIRECTION_NAMES:
            raise PrunetuneError(
                f"The direction of metric {name!r} of {owner} must be 'maximize' or 'minimize'. "
                f"Got {direction!r} instead."
            )
        checked[name] = str(direction)
    return checked


def check_metrics(
    metrics: Any, directions: Mapping[str, str], *, required: Collection[str] = ()
) -> dict[str, float]:
    """The metrics an objective returned, as plain floats, or PrunetuneError naming the bad metric.

    Every name must be one of ``directions`` and every value a finite real number; the names in
    ``required`` (those a search optimizes) must be present.
    """
    if not isinstance(metrics, Mapping):
        raise PrunetuneError(
            f"An objective must return a mapping of metric names to numbers. Got {type(metrics).__name__} instead."
        )
    checked = {}
    for name, value in metrics.items():
        if name not in directions:
            raise PrunetuneError(
                f"The objective returned the unknown metric {name!r}; its directions name "
                f"{', '.join(sorted(directions))}."
            )
        if not is_finite_number(value):
            raise PrunetuneError(f"The metric {name!r} must be a finite number. Got {value!r} instead.")
        checked[name] = float(value)
    missing = [name for name in required if name not in checked]
    if missing:
        raise PrunetuneError(
            f"The objective did not return the metric {missing[0]!r}; it returned {', '.join(checked) or 'nothing'}."
        )
    return checked


def load_objective(
    spec: str, /, *, directions: Mapping[str, str] | None = None, context: Mapping[str, Any] | None = None, **kwargs: Any
) -> Objective:
    """Import the objective ``spec`` names, build it with ``kwargs``, and return it with its directions.

    ``spec`` is ``"package.module:attr"`` (imported by name, as Python would) or
    ``"path/to/file.py:attr"`` (that one file is executed; its folder is NOT put on ``sys.path``,
    and no other path is searched). ``attr`` may be dotted (``Outer.inner``).

    A class is instantiated with ``kwargs``, plus those entries of ``context`` (what the search
    offers: ``base``, ``data``, ``finetune``, ...) that its constructor accepts by name or through
    ``**kwargs``; a function is used as is (``kwargs`` must then be empty). ``directions``, as an experiment file gives them, override the object's own
    ``directions`` attribute; one of the two must exist.

    Returns:
        An :class:`Objective`: the instance or function itself when it carries its directions,
        else a :class:`FunctionObjective` holding it and the given directions.

    A module loaded from a file is registered in ``sys.modules`` under a name made from its
    path, so objectives defined in it pickle within this process; worker processes that cannot
    import that name need it pickled by value (cloudpickle's ``register_pickle_by_value``).
    """
    target, _ = load_reference(spec, label="objective", callable_only=True)
    if inspect.isclass(target):
        # Context goes only where the constructor takes it by name or through **kwargs.
        names, any_keyword = accepted_keywords(target) or (frozenset(), False)
        offered = {
            key: value
            for key, value in (context or {}).items()
            if key not in kwargs and (any_keyword or key in names)
        }
        try:
            objective = target(**offered, **kwargs)
        except TypeError as error:
            raise PrunetuneError(f"The objective {spec!r} could not be built with {sorted(kwargs)}: {error}") from error
    else:
        if kwargs:
            raise PrunetuneError(
                f"The objective {spec!r} is a function; it takes no arguments from the experiment file. "
                f"Got {', '.join(sorted(kwargs))}."
            )
        objective = target
    if not callable(objective):
        raise PrunetuneError(f"The objective {spec!r}: an instance of {target.__name__} is not callable (no __call__).")
    own = getattr(objective, "directions", None)
    if directions is None and own is None:
        raise PrunetuneError(
            f"The objective {spec!r} has no 'directions' attribute: give its metrics' directions "
            f"('maximize' or 'minimize') in the experiment file."
        )
    if directions is None:
        check_directions(own, owner=repr(spec))
        return objective
    return FunctionObjective(function=objective, directions=check_directions(directions, owner=repr(spec)))
