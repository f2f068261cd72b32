"""prunetune: neural-network pruning methods as search spaces for Optuna and Ray."""

from __future__ import annotations

from prunetune.errors import PrunetuneError

__version__ = "0.1.0"
__all__ = ["PrunetuneError", "__version__"]
