"""report.html: a self-contained page, checked as text and in a real headless Chromium.

The browser test needs Chromium from the system packages (``make browser`` installs it); it skips,
saying so, where there is none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from prunetune.app.experiment import experiment_from_dict
from prunetune.results.report_html import COMPLETED_UID, write_html
from prunetune.app.runner import run_experiment
from prunetune.results.runs import load_run

ARITHMETIC = f"{Path(__file__).with_name('objectives_for_tests.py')}:ArithmeticObjective"
SCREENSHOT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "report_html.png"


def arithmetic_run(run_dir: Path, baselines: tuple[str, ...] = (), **options: float) -> Path:
    """A real run folder in a few seconds: LeNet-5 on digits, the arithmetic objective, 8 random trials."""
    experiment = experiment_from_dict({
        "model": {"train": {"epochs": 1}},
        "objective": {"type": ARITHMETIC, "options": options, "bn_recalibration_batches": 0},
        "search": {"sampler": "random", "trials": 8, "early_stopping": {"enabled": False}, "baselines": list(baselines)},
        "execution": {"executor": "local"},
    })
    run_experiment(experiment, run_dir, echo=lambda line: None)
    return run_dir


def test_page_is_self_contained_with_every_section(tmp_path: Path) -> None:
    run = load_run(arithmetic_run(tmp_path / "run", fail_above=0.5))
    counts = run.trials["state"].value_counts()
    assert counts.get("COMPLETE", 0) and counts.get("FAIL", 0), "the seed gives both outcomes"
    page = write_html(run, tmp_path / "report.html").read_text()
    assert f'data-completed-trials="{counts["COMPLETE"]}"' in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"?https?:", page), "every script must be inline"
    assert "plotly.js v" in page and page.count("Plotly.newPlot(") == 3  # the library inline; scatter, HV, heatmap
    for heading in ("Accuracy against compression", "Hypervolume against trials", "Per-layer ratios", "Pareto front", "Failures"):
        assert heading in page
    assert f'"uid":"{COMPLETED_UID}"' in page.replace(" ", "")
    assert "Base model" in page and "knee" in page and "plan:" in page


def test_baselines_are_dashed_lines_of_their_own_not_searched_points(tmp_path: Path) -> None:
    run = load_run(arithmetic_run(tmp_path / "run", baselines=("uniform:0.2,0.5,0.7", "global:0.3")))
    searched = run.searched()
    page = write_html(run, tmp_path / "report.html").read_text()
    plotted = re.findall(r'"name":"([^"]+)"', page.replace(" ", "").replace("\\u0026", "&"))
    assert f"completed({(searched['state'] == 'COMPLETE').sum()})" in plotted  # the baselines' 4 trials are not in it
    assert "baselineuniform(3)" in plotted and "baselineglobal(1)" in plotted
    assert page.count('"dash":"dash"') == 2
    assert "uniform:0.5" in page  # a baseline point's hover names its label


def test_run_without_a_completed_trial_says_so(tmp_path: Path) -> None:
    run = load_run(arithmetic_run(tmp_path / "run", fail_above=-1.0))
    assert set(run.trials["state"]) == {"FAIL"}
    page = write_html(run, tmp_path / "report.html").read_text()
    assert "No completed trial in this run (8 trials, 0 complete, 0 pruned, 8 failed)" in page
    assert "plan too aggressive" in page and "Plotly" not in page


def chromium() -> str:
    found = os.environ.get("PRUNETUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Chromium is not installed (make browser installs it: apt-get install -y chromium)")
    return found


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium with no network: background services off and every request sent to a dead proxy."""
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--hide-scrollbars",
        "--virtual-time-budget=10000", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.slow
def test_chromium_renders_one_point_per_completed_trial(tmp_path: Path) -> None:
    browser = chromium()
    experiment = experiment_from_dict({
        "model": {"train": {"epochs": 10}},
        "objective": {"finetune": {"epochs": 1, "max_steps": 15}, "bn_recalibration_batches": 0},
        "search": {"sampler": "random", "trials": 8, "early_stopping": {"enabled": True, "min_completed": 3}},
        "execution": {"executor": "local"},
    })
    run_experiment(experiment, tmp_path / "run", echo=lambda line: None)
    run = load_run(tmp_path / "run")
    completed = int((run.trials["state"] == "COMPLETE").sum())
    assert completed >= 2
    page = write_html(run, tmp_path / "run" / "report.html")

    dom = headless(browser, tmp_path / "profile-dom", "--dump-dom", page.as_uri()).stdout
    rendered = re.search(r'data-completed-points="(\d+)"', dom)
    assert rendered, "the page's script did not run after plotly rendered the scatter"
    assert int(rendered.group(1)) == completed
    group = re.search(rf'<g class="trace scatter trace{COMPLETED_UID}".*?</g></g>', dom, re.DOTALL)
    assert group and len(re.findall(r'<path class="point"', group.group(0))) == completed
    assert dom.count('class="main-svg"') >= 3, "scatter, hypervolume and heatmap all rendered"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    headless(browser, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}", "--window-size=1400,1800", page.as_uri())
    assert SCREENSHOT.stat().st_size > 20_000
    from PIL import Image

    with Image.open(SCREENSHOT) as image:
        assert image.size == (1400, 1800)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50, "a blank page, not plots"
