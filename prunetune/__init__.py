"""prunetune: neural-network pruning methods as search spaces for Optuna and Ray."""

from __future__ import annotations

from prunetune.errors import PrunetuneError

__version__ = "0.1.0"
__all__ = ["PrunetuneError", "__version__", "export_trial", "load_run", "select_trial"]


_LAZY = {
    "load_run": "prunetune.results.runs",
    "export_trial": "prunetune.results.export",
    "select_trial": "prunetune.results.export",
}


def __getattr__(name: str) -> object:
    """`prunetune.load_run` and the export functions without importing Optuna, pandas and torch on `import prunetune`."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunetune' has no attribute {name!r}")
