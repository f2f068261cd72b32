"""Where a reader looks for its files, and the one error shape when they are not there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from prunetune.errors import PrunetuneError

__all__ = ["as_path", "find_folder"]


def as_path(root: str | Path) -> Path:
    """The user's path with ``~`` expanded."""
    return Path(root).expanduser()


def find_folder(
    root: str | Path,
    *,
    what: str,
    expected: Sequence[str],
    has_files: Callable[[Path], bool],
    subfolders: Sequence[str] = (),
) -> Path:
    """The first of ``root`` and its conventional ``subfolders`` for which ``has_files`` is true.

    ``root`` may also be a file, in which case its folder is searched: users often paste the
    path of one of the files. ``expected`` is what the error message lists.
    """
    path = as_path(root)
    if path.is_file():
        path = path.parent
    listing = ", ".join(expected)
    if not path.is_dir():
        raise PrunetuneError(
            f"{what} folder not found: {path} does not exist; expected a folder with {listing}"
        )
    for candidate in [path, *(path / sub for sub in subfolders)]:
        if candidate.is_dir() and has_files(candidate):
            return candidate
    also = f" (nor in its subfolders {', '.join(f'{sub}/' for sub in subfolders)})" if subfolders else ""
    raise PrunetuneError(f"{what} files not found in {path}{also}: expected {listing}")
