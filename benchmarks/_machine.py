"""What every benchmark table states about where and how it was made."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{os.cpu_count()} cores ({cpu}){gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def command_line() -> str:
    """The command this process was started with, as a shell would take it."""
    return " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv])


def header(title: str) -> str:
    """Title, the exact command, the machine and the date, as Markdown."""
    command = command_line()
    today = datetime.date.today().isoformat()
    return f"# {title}\n\n- command: `{command}`\n- machine: {machine_line()}\n- date: {today}\n"


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path
