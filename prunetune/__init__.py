"""prunetune: neural-network pruning methods as search spaces for Optuna and Ray."""

from __future__ import annotations

from prunetune.errors import PrunetuneError

__version__ = "0.1.0"
__all__ = ["PrunetuneError", "__version__", "load_run"]


def __getattr__(name: str) -> object:
    """`prunetune.load_run` without importing Optuna and pandas on `import prunetune`."""
    if name == "load_run":
        from prunetune.search.runs import load_run

        return load_run
    raise AttributeError(f"module 'prunetune' has no attribute {name!r}")
