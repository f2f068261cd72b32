"""What a run folder says it searched: ``RUN/experiment.yaml`` read back as plain, read-only data.

The application writes that file (every key, defaults filled in) when a run starts; the readers
here only need to look things up in it (``settings.objective.constraints``, ``settings.data.spec``),
so they read it as data and never parse experiment files themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from prunetune.errors import PrunetuneError

__all__ = ["Settings", "read_settings"]


class Settings(Mapping[str, Any]):
    """A read-only mapping whose keys are also attributes; nested mappings are Settings too."""

    def __init__(self, data: Mapping[str, Any], where: str = "experiment") -> None:
        self._data = dict(data)
        self._where = where

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return Settings(value, f"{self._where}.{key}") if isinstance(value, Mapping) else value

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"The saved {self._where} has no key {key!r}.") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Settings({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A deep plain copy (mappings as dicts)."""
        return {key: value.to_dict() if isinstance(value, Settings) else value for key, value in self.items()}


def read_settings(path: Path) -> Settings:
    """The saved experiment at ``path``, or a PrunetuneError saying why it cannot be read."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PrunetuneError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise PrunetuneError(f"{path} does not hold a saved experiment (a mapping of keys).")
    return Settings(data)
