"""Experiment files: what to search, read from YAML and checked whole before any work starts.

Every key has a default, so an empty file (or none) is the embedded demo: LeNet-5 trained on the
bundled digits, filter pruning, NSGA-II, 40 trials on local Ray. A wrong key or value stops with
one message naming the key and what it allows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from prunetune.errors import PrunetuneError, bad_key, is_finite_number
from prunetune.objectives.training import TrainConfig
from prunetune.search.cluster import check_address
from prunetune.search.goals import parse_constraint
from prunetune.search.sampler_choice import SAMPLERS

__all__ = [
    "DataSection",
    "ExecutionSection",
    "Experiment",
    "ModelSection",
    "ObjectiveSection",
    "SearchSection",
    "experiment_from_dict",
    "load_experiment",
]

EXECUTORS = ("ray", "local")
KEEP_WEIGHTS = ("none", "front", "all")
DIRECTIONS = ("maximize", "minimize")


#: Fields of TrainConfig an experiment file sets elsewhere: `seed` at the top, `threads` as
#: `execution.threads_per_trial`, and the fine-tune's `batch_size` as `objective.batch_size`.
NOT_IN_FILE = {"model.train": ("seed", "threads"), "objective.finetune": ("seed", "threads", "batch_size")}


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    """The base model: a checkpoint from `prunetune train`, or a zoo model trained once into the run folder."""

    checkpoint: str | None = None
    name: str = "lenet5"
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15))


@dataclass(frozen=True, kw_only=True)
class DataSection:
    """The data: a spec (``digits``, ``mnist:PATH``, ``imagefolder:PATH``, ...) or the user's
    ``factory`` (``module:callable`` / ``file.py:callable``) called with ``options``; then the
    validation share, a record limit, the image size of an image folder, loader worker processes
    and train-time augmentation (``{crop_padding: 4, hflip: true}``)."""

    spec: str = "digits"
    factory: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    limit: int | None = None
    image_size: int | None = None
    num_workers: int = 0
    augment: dict[str, Any] = field(default_factory=dict)
    #: The train/validation split's seed (None: the experiment's seed). Name the base's split when
    #: searches with other seeds share one base, or they validate on its training records.
    split_seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class ObjectiveSection:
    """What a trial measures; `objectives` are optimised, `constraints` bound (e.g. 'accuracy_drop <= 1').

    `type` is 'classification' or the user's own objective as 'module:attr' / 'path/to/file.py:attr';
    `options` are its keyword arguments, `directions` the metrics' directions for a plain function.
    `keep_weights` ('none', 'front' or 'all') keeps trials' fine-tuned weights in `RUN/weights/` so
    that `prunetune export` returns exactly the evaluated model ('front': of the front's trials only).
    `target` ({macs_reduction: 2.0}, or compression, params, size_bytes, latency_ms) repairs every plan
    onto that budget before training; the objectives then default to accuracy alone. A latency_ms
    target turns `measure_latency` on, so each trial also times its real network.
    """

    type: str = "classification"
    options: dict[str, Any] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01))
    batch_size: int = 64
    bn_recalibration_batches: int = 20
    measure_latency: bool = False
    objectives: dict[str, str] = field(default_factory=lambda: {"accuracy": "maximize", "compression": "maximize"})
    constraints: list[str] = field(default_factory=list)
    keep_weights: str = "none"
    #: Target mode: every plan repaired onto this budget before training ({macs_reduction: 2.0});
    #: accuracy is then the one objective (see prunetune.pruners.target).
    target: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EarlyStoppingSection:
    """Stop a trial whose accuracy at a step is `margin` below a completed trial's at equal or higher
    compression; from step `warmup_steps` on (step 0 is right after pruning, before fine-tuning),
    once `min_completed` trials have completed."""

    enabled: bool = True
    margin: float = 0.02
    min_completed: int = 4
    warmup_steps: int = 0


@dataclass(frozen=True, kw_only=True)
class ScreeningSection:
    """Cheap screening (EagleEye's adaptive BN as a fidelity): right after pruning and BN
    recalibration, a plan outside the best `keep_fraction` of the plans screened so far is not
    fine-tuned (recorded as pruned, 'screened out'); the first `min_screened` all go on."""

    enabled: bool = False
    keep_fraction: float = 0.25
    min_screened: int = 8


@dataclass(frozen=True, kw_only=True)
class SearchSection:
    sampler: str = "nsga2"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    trials: int = 40
    batch_generations: bool = True
    early_stopping: EarlyStoppingSection = field(default_factory=EarlyStoppingSection)
    screening: ScreeningSection = field(default_factory=ScreeningSection)
    #: Start points evaluated first on a fresh run: plans, or names (see prunetune.app.priors).
    start_from: list[Any] = field(default_factory=list)
    #: Baselines run after the search, beside its front (see prunetune.app.baselines).
    baselines: list[Any] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ExecutionSection:
    """Where trials run: the executor, how many at once, their CPUs, GPUs and device (``auto``: the
    GPU a trial was given, else the CPU; or ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""

    executor: str = "ray"
    device: str = "auto"
    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads_per_trial: int | None = None
    address: str | None = None
    retries: int = 2


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A whole experiment; `Experiment()` is the embedded demo."""

    name: str = "demo"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    methods: dict[str, dict[str, Any] | None] = field(default_factory=lambda: {"filters": {"criterion": "l1"}})
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    search: SearchSection = field(default_factory=SearchSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)
    storage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The experiment as a file would write it (every key, defaults filled in)."""
        data = dataclasses.asdict(self)
        for dotted, fields in NOT_IN_FILE.items():
            section, key = dotted.split(".")
            for name in fields:
                data[section][key].pop(name, None)
        return data

    def finetune_config(self) -> TrainConfig:
        """The trial's fine-tune: `objective.finetune` with the experiment's seed and batch size."""
        return dataclasses.replace(self.objective.finetune, seed=self.seed, batch_size=self.objective.batch_size)

    def base_training_config(self) -> TrainConfig:
        """Base-model training: `model.train` with the experiment's seed."""
        return dataclasses.replace(self.model.train, seed=self.seed)

    def replace(self, **changes: Any) -> Experiment:
        """A copy with dotted keys changed (`{"search.trials": 80}`), validated like a file."""
        data = self.to_dict()
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            node[leaf] = value
        return experiment_from_dict(data)


def _check(path: str, value: Any, hint: Any) -> Any:
    """Check `value` against a field's type hint; nested sections are parsed recursively."""
    if dataclasses.is_dataclass(hint):
        return _parse_section(hint, value, path)
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise PrunetuneError(f"The '{path}' key needs a value (null is not allowed here).")
    if text.startswith("dict"):
        if not isinstance(value, Mapping):
            bad_key(path, value, "a mapping")
        return dict(value)
    if text.startswith("list"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            bad_key(path, value, "a list")
        return value
    if text.startswith("str"):  # a name, or (from Python only) a callable: `schedule`
        if not isinstance(value, str):
            bad_key(path, value, "a string")
        return value
    if hint is bool or text == "bool":
        if not isinstance(value, bool):
            bad_key(path, value, "true or false")
        return value
    if "int" in text and "float" not in text:
        if isinstance(value, bool) or not isinstance(value, int):
            bad_key(path, value, "a whole number")
        return value
    if "float" in text:
        if not is_finite_number(value):
            bad_key(path, value, "a number")
        return float(value)
    if "str" in text:
        if not isinstance(value, str):
            bad_key(path, value, "a string")
        return value
    return value


def _parse_section(cls: type, data: Any, path: str) -> Any:
    where = f"'{path}' section" if path else "experiment file"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PrunetuneError(f"The {where} must be a mapping of keys. Got {data!r} instead.")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in NOT_IN_FILE.get(path, ())]
    for key in data:
        if key not in names:
            prefix = f"{path}." if path else ""
            raise PrunetuneError(f"Unknown key '{prefix}{key}' in the {where}. Known keys: {', '.join(names)}.")
    values = {key: _check(f"{path}.{key}" if path else key, value, hints[key]) for key, value in data.items()}
    if cls is TrainConfig:
        defaults = Experiment().model.train if path == "model.train" else Experiment().objective.finetune
        config = dataclasses.replace(defaults, **values)
        config.validate(where=path)
        return config
    return cls(**values)


def _choice(path: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        bad_key(path, value, f"one of {', '.join(allowed)}")


def _at_least(path: str, value: float | None, least: float) -> None:
    if value is not None and value < least:
        bad_key(path, value, f">= {least:g}")


def _shorthand(data: Any) -> Any:
    """The forms people write first: ``model: runs/base.pt`` (a checkpoint), ``model: lenet5`` (a zoo
    name or ``module:callable``) and ``data: "mnist:PATH"`` (a spec), as their mappings."""
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    model = data.get("model")
    if isinstance(model, str):
        is_checkpoint = model.endswith((".pt", ".pth")) and not model.rpartition(":")[2].isidentifier()
        data["model"] = {"checkpoint": model} if is_checkpoint else {"name": model}
    if isinstance(data.get("data"), str):
        data["data"] = {"spec": data["data"]}
    return data


def _in_target_mode(experiment: Experiment) -> Experiment:
    """Check `objective.target`; with the default objectives, accuracy becomes the one objective."""
    from prunetune.pruners.target import Target

    objective = experiment.objective
    target = Target.from_config(objective.target)
    if objective.objectives == ObjectiveSection().objectives:
        experiment = experiment.replace(**{"objective.objectives": {"accuracy": "maximize"}})
    elif len(objective.objectives) != 1:
        raise PrunetuneError(
            f"The 'objective.target' key ({target}) makes the search optimise one metric, but 'objective.objectives' "
            f"names {', '.join(objective.objectives)}: keep one (accuracy), or leave it out."
        )
    if target.metric == "latency_ms" and not objective.measure_latency:
        experiment = experiment.replace(**{"objective.measure_latency": True})  # the ledger shows the real latency
    return experiment


def experiment_from_dict(data: Any) -> Experiment:
    """Parse and check a whole experiment (everything a file can get wrong, before any work)."""
    experiment = _parse_section(Experiment, _shorthand(data), "")
    search, execution, objective = experiment.search, experiment.execution, experiment.objective
    _choice("search.sampler", search.sampler, SAMPLERS)
    _choice("execution.executor", execution.executor, EXECUTORS)
    check_address(execution.address)
    _choice("objective.keep_weights", objective.keep_weights, KEEP_WEIGHTS)
    _at_least("search.trials", search.trials, 1)
    _at_least("execution.workers", execution.workers, 1)
    _at_least("data.num_workers", experiment.data.num_workers, 0)
    if experiment.data.factory and experiment.data.spec != DataSection().spec:
        raise PrunetuneError("The 'data' section names both 'spec' and 'factory': keep one.")
    _at_least("execution.cpus_per_trial", execution.cpus_per_trial, 0)
    _at_least("execution.gpus_per_trial", execution.gpus_per_trial, 0)
    _at_least("execution.threads_per_trial", execution.threads_per_trial, 1)
    _at_least("execution.retries", execution.retries, 0)
    _at_least("model.train.epochs", experiment.model.train.epochs, 1)
    _at_least("search.early_stopping.margin", search.early_stopping.margin, 0)
    _at_least("search.early_stopping.warmup_steps", search.early_stopping.warmup_steps, 0)
    _at_least("search.early_stopping.min_completed", search.early_stopping.min_completed, 1)
    _at_least("search.screening.min_screened", search.screening.min_screened, 1)
    if not 0.0 < search.screening.keep_fraction <= 1.0:
        raise PrunetuneError(
            f"The 'search.screening.keep_fraction' key must be in (0, 1]. Got {search.screening.keep_fraction!r} instead."
        )
    if not experiment.methods:
        raise PrunetuneError("The 'methods' section must name at least one pruning method.")
    for name, options in experiment.methods.items():
        if options is not None and not isinstance(options, Mapping):
            raise PrunetuneError(f"The 'methods.{name}' options must be a mapping. Got {options!r} instead.")
    if objective.target:
        experiment = _in_target_mode(experiment)
        objective = experiment.objective
    if not objective.objectives:
        raise PrunetuneError("The 'objective.objectives' section must name at least one metric.")
    for name, direction in objective.objectives.items():
        if direction not in DIRECTIONS:
            raise PrunetuneError(
                f"The 'objective.objectives.{name}' key must be one of {', '.join(DIRECTIONS)}. Got {direction!r} instead."
            )
    for text in objective.constraints:
        parse_constraint(str(text))
    from prunetune.app.baselines import check_baselines
    from prunetune.app.priors import check_start_from

    check_start_from(search.start_from, experiment.methods)
    check_baselines(search.baselines, experiment.methods)
    if experiment.name != Path(experiment.name).name or experiment.name in ("", ".", ".."):
        raise PrunetuneError(f"The 'name' key must be a plain folder name. Got {experiment.name!r} instead.")
    return experiment


def load_experiment(path: str | Path | None) -> Experiment:
    """Read and check an experiment file; None gives the embedded defaults."""
    if path is None:
        return Experiment()
    path = Path(path).expanduser()
    if not path.is_file():
        raise PrunetuneError(f"Experiment file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PrunetuneError(f"{path} is not valid YAML{where}: {problem}") from None
    experiment = experiment_from_dict(data)
    if data is None or "name" not in data:
        experiment = dataclasses.replace(experiment, name=path.stem)
    return experiment
