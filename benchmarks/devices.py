"""Trials per hour on the CPU and on GPUs: the same ResNet-20 filter search everywhere.

Eight trials of a random filter search on ResNet-20 (the CIFAR-10 subset: 2,880 training images),
each pruning, recalibrating BN and fine-tuning one epoch, on Ray:

- the CPU: 2 trials at a time, half the cores each;
- one trial per GPU (``gpus_per_trial: 1``), as many at a time as there are GPUs;
- four trials sharing one GPU (``gpus_per_trial: 0.25``);

each in fp32 and bf16 (autocast). A row that cannot run here (no CUDA) says why. The base is
trained briefly (3 epochs): this measures speed, not accuracy.

    PRUNETUNE_DATASETS=../shared/datasets .venv/bin/python benchmarks/devices.py

writes ``benchmarks/results/devices.md`` and ``devices.json``: fine-tuning images per second (per
trial, and all trials together), seconds per trial and trials per hour.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bases import CIFAR_SUBSET, train_once  # noqa: E402
from _machine import header, write_result  # noqa: E402

from prunetune.app.experiment import experiment_from_dict  # noqa: E402
from prunetune.app.runner import run_experiment  # noqa: E402
from prunetune.results import load_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "runs" / "benchmarks" / "resnet20-devices.pt"
TRIALS = 8


def rows_to_run(quick: bool) -> list[dict[str, Any]]:
    """Every configuration, with why it cannot run here (None when it can)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    no_cuda = None if gpus else "not run: no CUDA device on this machine"
    cpus = os.cpu_count() or 2
    rows = []
    for precision in ("fp32", "bf16"):
        rows.append({"name": "CPU", "precision": precision, "device": "cpu", "workers": 2,
                     "cpus_per_trial": max(1, cpus // 2), "gpus_per_trial": 0, "why_not": None})
        rows.append({"name": f"1 trial per GPU ({gpus or 'no'} GPU)", "precision": precision, "device": "auto",
                     "workers": max(gpus, 1), "cpus_per_trial": max(1, cpus // max(gpus, 1) // 2), "gpus_per_trial": 1,
                     "why_not": no_cuda})
        rows.append({"name": "4 trials sharing 1 GPU", "precision": precision, "device": "auto", "workers": 4,
                     "cpus_per_trial": max(1, cpus // 8), "gpus_per_trial": 0.25, "why_not": no_cuda})
    if quick:
        rows = [row for row in rows if row["precision"] == "fp32"]
    return rows


def run_row(row: dict[str, Any], folder: Path, limit: int | None) -> dict[str, Any]:
    experiment = experiment_from_dict({
        "name": "devices",
        "model": {"checkpoint": str(BASE)},
        "data": {"spec": CIFAR_SUBSET, "val_fraction": 0.1, **({"limit": limit} if limit else {})},
        "methods": {"filters": {"criterion": "l1", "max_ratio": 0.7}},
        "objective": {"finetune": {"epochs": 1, "lr": 0.01, "precision": row["precision"]}, "batch_size": 64},
        "search": {"sampler": "random", "trials": TRIALS, "early_stopping": {"enabled": False}},
        "execution": {"executor": "ray", "workers": row["workers"], "cpus_per_trial": row["cpus_per_trial"],
                      "gpus_per_trial": row["gpus_per_trial"], "device": row["device"]},
    })
    run_dir = folder / f"{row['name']}-{row['precision']}".replace(" ", "_").replace("(", "").replace(")", "")
    started = time.perf_counter()
    run_experiment(experiment, run_dir, echo=lambda line: None)
    wall = time.perf_counter() - started
    run = load_run(run_dir)
    done = run.trials[run.trials["state"] == "COMPLETE"]
    images = len(run.data().train)
    seconds = float(done["seconds"].mean()) if len(done) else float("nan")
    return {
        **{key: row[key] for key in ("name", "precision", "workers", "cpus_per_trial", "gpus_per_trial")},
        "completed": int(len(done)),
        "train_images": images,
        "devices": sorted(str(device) for device in done["device"].dropna().unique()),
        "seconds_per_trial": seconds,
        "images_per_s_per_trial": images / seconds if seconds == seconds else float("nan"),
        "images_per_s_total": images * len(done) / wall,
        "trials_per_hour": len(done) / wall * 3600,
        "wall_s": wall,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | precision | trials at once | device | done | s / trial | images/s per trial | images/s, all trials | trials / hour |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        if result.get("why_not"):
            lines.append(f"| {result['name']} | {result['precision']} | | | | {result['why_not']} | | | |")
            continue
        lines.append(
            f"| {result['name']} | {result['precision']} | {result['workers']} | {', '.join(result['devices'])} | "
            f"{result['completed']}/{TRIALS} | {result['seconds_per_trial']:.1f} | {result['images_per_s_per_trial']:.0f} | "
            f"{result['images_per_s_total']:.0f} | {result['trials_per_hour']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fp32 only, 1,000 training images: a smoke run")
    parser.add_argument("--output", type=Path, default=None, help="the .md to write (default benchmarks/results/devices.md)")
    args = parser.parse_args()
    limit = 1000 if args.quick else None
    train_once(BASE, model="resnet20", data=CIFAR_SUBSET, epochs=3)
    folder = Path(tempfile.mkdtemp(prefix="devices-"))
    results = []
    try:
        for row in rows_to_run(args.quick):
            if row["why_not"]:
                print(f"{row['name']} {row['precision']}: {row['why_not']}", flush=True)
                results.append({**row})
                continue
            print(f"{row['name']} {row['precision']}: running {TRIALS} trials", flush=True)
            result = run_row(row, folder, limit)
            print(f"  {result['seconds_per_trial']:.1f} s/trial, {result['trials_per_hour']:.0f} trials/hour", flush=True)
            results.append(result)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    text = (
        header("Trials per hour on the CPU and on GPUs (ResNet-20 filter search, CIFAR-10 subset)")
        + f"- GPU: {gpu}\n- search: {TRIALS} random filter plans (max ratio 0.7), BN recalibration, 1 fine-tune epoch "
        + f"(SGD lr 0.01, batch 64) on {results[0].get('train_images', '?')} training images; base trained 3 epochs\n"
        + "- s / trial: mean wall time of a trial (pruning, recalibration, fine-tuning, evaluation); images/s per trial: "
        + "training images / s per trial; images/s, all trials: all trials' training images / the search's wall time\n\n"
        + table(results) + "\n"
    )
    if args.output is None:
        path = write_result("devices.md", text)
    else:
        path = args.output
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps({"trials": TRIALS, "gpu": gpu, "rows": results}, indent=2, default=str) + "\n")
    print(f"wrote {path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
