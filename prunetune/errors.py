"""The one error type a user sees.

Anything the user can fix (a bad spec, a missing data folder, an unknown layer name) raises
:class:`PrunetuneError`; the command line prints its message alone and exits with status 2.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["PrunetuneError"]


class PrunetuneError(ValueError):
    """A problem with the user's input, stated in one message that names it."""
