"""``imagefolder:PATH``: the user's own images in the class-per-folder layout, read with Pillow.

Layout: ``PATH/train/<class>/*.png|jpg|jpeg`` (the classes are the folder names, sorted), and
``PATH/val/<class>/...`` and ``PATH/test/<class>/...`` where present. Without ``val`` the validation
split is carved from train (stratified, seeded); without ``test`` a test split is carved first with
its own ``test_seed``. Every image is resized to ``image_size`` x ``image_size``; grey images stay
one channel when all of train is grey, else everything is RGB. Pixels are scaled to [0, 1] and
standardised per channel with statistics of the train split.

The splits hold file paths, not pixels: each item is read when a loader asks for it, so a folder
larger than memory works, and a Ray worker reads the files where it runs (the folder must exist at
the same path on every node).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from prunetune.errors import PrunetuneError
from prunetune.zoo.datasets._split import stratified_split, stratified_subset
from prunetune.zoo.datasets.base import DataSplits

__all__ = ["ImageFiles", "load_image_folder"]

SUFFIXES = (".png", ".jpg", ".jpeg")
#: Train images read to measure the per-channel mean and std (an even sample of larger folders).
STATS_SAMPLE = 2000


class ImageFiles(Dataset):
    """Image files with labels, read, resized and standardised on access."""

    def __init__(
        self, files: list[Path], labels: np.ndarray, *, image_size: int, mode: str,
        mean: tuple[float, ...] = (), std: tuple[float, ...] = (),
    ) -> None:
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = image_size
        self.mode = mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) if mean else None
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1) if std else None

    def __len__(self) -> int:
        return len(self.files)

    def pixels(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 ``(C, H, W)`` on the [0, 1] scale, not standardised."""
        from PIL import Image

        with Image.open(self.files[index]) as image:
            image = image.convert(self.mode).resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array)
        return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.pixels(index)
        if self.mean is not None and self.std is not None:
            image = (image - self.mean) / self.std
        return image, int(self.labels[index])


def _scan(folder: Path, classes: list[str] | None) -> tuple[list[str], list[Path], np.ndarray]:
    """The class folders of ``folder`` (or the given ones) and their image files with labels."""
    found = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if classes is None:
        classes = found
        if not classes:
            raise PrunetuneError(
                f"The image folder {folder} has no class folders: put each class's images in "
                f"{folder}/<class>/ (png or jpg)."
            )
    else:
        unknown = [name for name in found if name not in classes]
        if unknown:
            raise PrunetuneError(f"{folder} has the class folder {unknown[0]!r}, which train does not have.")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        directory = folder / name
        if not directory.is_dir():
            continue
        images = sorted(path for path in directory.iterdir() if path.suffix.lower() in SUFFIXES and path.is_file())
        files += images
        labels += [label] * len(images)
    if not files:
        raise PrunetuneError(f"The image folder {folder} holds no png or jpg images in its class folders.")
    return classes, files, np.asarray(labels, dtype=np.int64)


def _mode(files: list[Path]) -> str:
    from PIL import Image

    for path in files:
        with Image.open(path) as image:
            if image.mode not in ("L", "1", "I;16", "I"):
                return "RGB"
    return "L"


def _stats(dataset: ImageFiles, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    count = min(len(dataset), STATS_SAMPLE)
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=count, replace=False))
    images = torch.stack([dataset.pixels(int(index)) for index in chosen])
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_image_folder(
    path: Path, *, image_size: int, val_fraction: float, seed: int, limit: int | None,
    normalize: bool, test_fraction: float, test_seed: int,
) -> DataSplits:
    """The splits of image folder ``path`` (see the module docstring)."""
    root = Path(path)
    if not (root / "train").is_dir():
        raise PrunetuneError(
            f"{root} is not an image folder: it needs {root}/train/<class>/ folders of png or jpg images "
            "(and optionally val/ and test/ alike)."
        )
    classes, files, labels = _scan(root / "train", None)
    notes = [f"{len(classes)} classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"]
    pool = np.arange(len(files))
    if (root / "test").is_dir():
        _, test_files, test_labels = _scan(root / "test", classes)
        notes.append("test = the test folder")
    else:
        pool, carved = stratified_split(labels, test_fraction, np.random.default_rng(test_seed))
        test_files, test_labels = [files[i] for i in carved], labels[carved]
        notes.append(f"test = stratified {test_fraction * 100:g}% of train (test_seed {test_seed}), there being no test folder")
    rng = np.random.default_rng(seed)
    if limit is not None and limit < len(pool):
        pool = pool[stratified_subset(labels[pool], limit, rng)]
        notes.append(f"training images limited to {limit:,} (stratified, seed {seed})")
    if (root / "val").is_dir():
        _, val_files, val_labels = _scan(root / "val", classes)
        train_idx = pool
        notes.append("val = the val folder")
    else:
        kept, carved_val = stratified_split(labels[pool], val_fraction, rng)
        train_idx, val_idx = pool[kept], pool[carved_val]
        val_files, val_labels = [files[i] for i in val_idx], labels[val_idx]
        notes.append(f"val = stratified {val_fraction * 100:g}% of train (seed {seed})")
    train_files = [files[i] for i in train_idx]
    mode = _mode(train_files)
    options: dict[str, Any] = {"image_size": image_size, "mode": mode}
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if normalize:
        mean, std = _stats(ImageFiles(train_files, labels[train_idx], **options), seed)
        notes.append("pixels scaled to [0, 1], then standardised per channel with the train split's mean/std")
    channels = 1 if mode == "L" else 3
    return DataSplits(
        name="imagefolder",
        train=ImageFiles(train_files, labels[train_idx], mean=mean, std=std, **options),
        val=ImageFiles(val_files, val_labels, mean=mean, std=std, **options),
        test=ImageFiles(test_files, test_labels, mean=mean, std=std, **options),
        num_classes=len(classes),
        input_shape=(channels, image_size, image_size),
        mean=mean or (0.0,) * channels,
        std=std or (1.0,) * channels,
        description=(
            f"image folder {root} at {image_size}x{image_size}: {len(train_files):,} train / {len(val_files):,} val / "
            f"{len(test_files):,} test; " + "; ".join(notes)
        ),
    )
