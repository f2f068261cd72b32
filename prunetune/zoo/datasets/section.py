"""An experiment file's ``data`` section opened: a bundled set or image folder by its spec, or the
user's factory; then the loader settings (worker processes, augmentation) on top."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prunetune.errors import PrunetuneError, bad_key
from prunetune.zoo.datasets.augment import check_augment
from prunetune.zoo.datasets.base import DataSplits
from prunetune.zoo.datasets.factory import load_factory
from prunetune.zoo.datasets.spec import load_data

__all__ = ["checkpoint_source", "open_data", "split_seed"]


def open_data(section: Mapping[str, Any], *, seed: int) -> DataSplits:
    """The splits ``section`` describes (keys: ``spec`` or ``factory`` with ``options``,
    ``val_fraction``, ``limit``, ``image_size``, ``num_workers``, ``augment``), split with ``seed``
    unless the section names its own ``split_seed``."""
    seed = split_seed(section, seed)
    factory, options = section.get("factory"), section.get("options") or {}
    common = {"val_fraction": section.get("val_fraction", 0.1), "seed": seed, "limit": section.get("limit")}
    if factory:
        if section.get("image_size") is not None:
            raise PrunetuneError("The 'data.image_size' key applies to imagefolder:PATH; a factory sizes its own data.")
        splits = load_factory(factory, options=options, **common)
    else:
        if options:
            raise PrunetuneError("The 'data.options' key goes with 'data.factory' (the factory's arguments); no factory is named.")
        extra = {"image_size": section["image_size"]} if section.get("image_size") is not None else {}
        splits = load_data(section.get("spec", "digits"), **common, **extra)
    workers = section.get("num_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        bad_key("data.num_workers", workers, "an integer >= 0")
    augment = check_augment(dict(section.get("augment") or {}), splits.input_shape)
    return dataclasses.replace(splits, num_workers=workers, augment=augment)


def split_seed(section: Mapping[str, Any], seed: int) -> int:
    """The seed of the train/validation split: the section's ``split_seed``, else the experiment's seed.

    Searches over several seeds on one base model keep the split the base was trained on by naming
    it here; otherwise a search seeded differently would validate on the base's training records.
    """
    value = section.get("split_seed")
    if value is None:
        return seed
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        bad_key("data.split_seed", value, "an integer >= 0")
    return int(value)


def checkpoint_source(section: Mapping[str, Any], *, seed: int) -> tuple[str | None, dict[str, Any]]:
    """What a checkpoint records to read its data again with ``load_data``: the spec and its options
    (no spec for a factory's data, which only the experiment file can name)."""
    if section.get("factory"):
        return None, {}
    seed = split_seed(section, seed)
    options = {"val_fraction": section.get("val_fraction", 0.1), "seed": seed, "limit": section.get("limit")}
    if section.get("image_size") is not None:
        options["image_size"] = section["image_size"]
    return section.get("spec", "digits"), options
