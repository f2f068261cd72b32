"""Argument types and readers the commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from prunetune.errors import PrunetuneError

if TYPE_CHECKING:
    from prunetune.pruners import Plan

__all__ = ["floats", "model_arg", "positive_int", "read_plan"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def model_arg(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    import yaml

    return key, yaml.safe_load(raw)


def floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PrunetuneError(f"{flag} takes comma-separated numbers. Got {text!r} instead.") from None
    if not values:
        raise PrunetuneError(f"{flag} needs at least one number.")
    return values


def read_plan(text: str) -> Plan:
    from prunetune.pruners import Plan

    path = Path(text).expanduser()
    if not text.lstrip().startswith("{"):
        if not path.is_file():
            raise PrunetuneError(f"--plan {text}: no such file (give a plan JSON file or inline JSON).")
        text = path.read_text()
    return Plan.from_json(text)
