"""Early stopping on against off: wall time to the same hypervolume, final hypervolume, trials stopped.

LeNet-5 on MNIST, filter pruning, objectives validation accuracy and compression, as in
sample_efficiency.py, but every trial fine-tunes `--epochs` full epochs on a small training set,
so the objective reports validation accuracy at steps 0 (right after pruning and batch-norm
recalibration), 1, ..., `--epochs` and early stopping (`search.early_stopping`, default margin)
has something to cut. For each sampler, one run with early stopping off and one with it on, same
seed. The target is 95% of the hypervolume the "off" run's first `--mark` trials reach; the table
gives the wall time each run needed to first reach it. Writes benchmarks/results/early_stopping.md.
Run from the repo root:
    .venv/bin/python benchmarks/early_stopping.py [--samplers nsga2] [--trials 60] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import sys
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import header, write_result  # noqa: E402
from _pruning_bench import (  # noqa: E402
    HV_NOTE,
    MNIST,
    ROOT,
    base_line,
    echo_to,
    ensure_base,
    experiment,
    feasible_points,
    finished_by_number,
    front,
    hv,
    init_ray,
    point,
    run,
    shutdown_ray,
)

from prunetune.search.early_stopping import dominated  # noqa: E402
from prunetune.app.experiment import EarlyStoppingSection  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLER_OPTIONS = {"nsga2": {"population_size": 10}, "pymoo-nsga2": {"population_size": 10}, "scipy-de": {"popsize": 3}}
TARGET_SHARE = 0.95
#: The verdict's rule: early stopping earns its default when, for every sampler, it saves at least this
#: share of the trials' worker time, its final HV is at most HV_TOLERANCE below off's, and its front is no smaller.
MIN_SAVING, HV_TOLERANCE = 0.10, 0.01


def timeline(study: optuna.Study, started: float) -> list[tuple[float, float, int]]:
    """(seconds since the run started, HV of the completed front so far, trials finished) after each finish."""
    trials = sorted(
        (t for t in finished_by_number(study) if t.datetime_complete is not None), key=lambda t: t.datetime_complete
    )
    start = datetime.datetime.fromtimestamp(started)
    points: list[tuple[float, float]] = []
    rows = []
    for count, trial in enumerate(trials, 1):
        p = point(trial)
        if p is not None:
            points.append(p)
        rows.append(((trial.datetime_complete - start).total_seconds(), hv(points), count))
    return rows


def first_reach(rows: list[tuple[float, float, int]], target: float) -> tuple[float, int] | None:
    for seconds, value, count in rows:
        if value >= target:
            return seconds, count
    return None


def summarise(study: optuna.Study, started: float, wall: float, mark: int) -> dict:
    trials = finished_by_number(study)
    states = [t.state for t in trials]
    return {
        "study": study,
        "wall": wall,
        "timeline": timeline(study, started),
        "hv_mark": hv(feasible_points(trials[:mark])),
        "hv_final": hv(feasible_points(trials)),
        "front": front(feasible_points(trials)),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "trial_seconds": sum(float(t.user_attrs.get("times", {}).get("seconds", 0.0)) for t in trials),
        "steps_run": sum(len(t.user_attrs.get("curve", {})) for t in trials),
    }


def false_stops(on: optuna.Study, off: optuna.Study) -> tuple[int, int, int]:
    """Of the trials stopped in `on` whose plan the `off` run also tried (same trial number, same
    parameters): how many there were, and how many of those ended on the `off` run's final front."""
    off_by_number = {t.number: t for t in finished_by_number(off)}
    off_front = set(front(feasible_points(list(off_by_number.values()))))
    stopped = [t for t in finished_by_number(on) if t.state == optuna.trial.TrialState.PRUNED]
    same = [t for t in stopped if t.number in off_by_number and off_by_number[t.number].params == t.params]
    lost = [t for t in same if point(off_by_number[t.number]) in off_front]
    return len(stopped), len(same), len(lost)


def stops_by_step(study: optuna.Study) -> dict[int, int]:
    """How many stopped trials were stopped at each step (their last report)."""
    counts: collections.Counter[int] = collections.Counter()
    for trial in finished_by_number(study):
        curve = trial.user_attrs.get("curve", {})
        if trial.state == optuna.trial.TrialState.PRUNED and curve:
            counts[max(int(step) for step in curve)] += 1
    return dict(sorted(counts.items()))


def replay(off: optuna.Study, warmup_steps: int, epochs: int) -> tuple[int, int, int, int]:
    """The stop rule (default margin and min_completed) replayed on the off run's own curves.

    Each completed trial is judged step by step against the trials that completed before it did;
    returns (trials it would stop, of those on the off run's final front, epochs it would save, trials).
    """
    defaults = EarlyStoppingSection()
    done = [t for t in finished_by_number(off) if t.state == optuna.trial.TrialState.COMPLETE and t.datetime_complete]
    final_front = set(front(feasible_points(done)))

    def history(before: datetime.datetime) -> list[tuple[float, dict[str, float]]]:
        return [
            (float(t.user_attrs["metrics"]["compression"]), {k: v["val_accuracy"] for k, v in t.user_attrs["curve"].items()})
            for t in done if t.datetime_complete < before
        ]

    stopped = lost = saved = 0
    for trial in done:
        seen = history(trial.datetime_complete)
        if len(seen) < defaults.min_completed:
            continue
        curve = trial.user_attrs.get("curve", {})
        for step in sorted(curve, key=int):
            values = curve[step]
            if int(step) >= warmup_steps and dominated(
                seen, compression=values["compression"], step=int(step), accuracy=values["val_accuracy"], margin=defaults.margin
            ):
                stopped += 1
                saved += epochs - int(step)
                lost += point(trial) in final_front
                break
    return stopped, lost, saved, len(done)


def load_arm(run_dir: Path) -> tuple[optuna.Study, float, float]:
    """A previous run's study; its start taken as its first trial's start, its wall time to its last finish."""
    url = f"sqlite:///{run_dir / 'study.db'}"
    (name,) = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=name, storage=url)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    started = min(t.datetime_start for t in trials).timestamp()
    return study, started, max(t.datetime_complete for t in trials).timestamp() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default="nsga2", help="comma-separated sampler names")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--mark", type=int, default=40, help="the off run's first MARK trials set the target HV")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per trial (objective.finetune.epochs)")
    parser.add_argument("--limit", type=int, default=5000, help="MNIST training records (data.limit) for base and trials")
    parser.add_argument("--base-epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", choices=("ray", "local"), default="ray")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", type=Path, default=None, help="default: runs/benchmarks/lenet5-mnist-LIMIT.pt")
    parser.add_argument("--work", type=Path, default=ROOT / "runs/benchmarks/early_stopping")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: 8 trials, 2 epochs on 1,000 records")
    parser.add_argument(
        "--table-only", action="store_true",
        help="run nothing: rebuild the table from the studies a previous run left in --work",
    )
    args = parser.parse_args()
    if args.quick:
        args.trials, args.mark, args.epochs, args.limit, args.base_epochs = min(args.trials, 8), 4, 2, 1000, 2
    args.mark = min(args.mark, args.trials)
    base = args.base or ROOT / f"runs/benchmarks/lenet5-mnist-{args.limit}.pt"
    torch.set_num_threads(args.workers)
    say = echo_to("[bench]")
    base_metrics = ensure_base(base, limit=args.limit, epochs=args.base_epochs, echo=say)
    say(base_line(base_metrics, base, args.limit, args.base_epochs))
    finetune = {"epochs": args.epochs, "max_steps": None, "lr": 0.01}
    results = {}
    samplers = [s for s in args.samplers.split(",") if s]
    if args.table_only:
        for sampler in samplers:
            for arm in ("off", "on"):
                study, started, wall = load_arm(args.work / f"{sampler}-{arm}")
                results[sampler, arm] = summarise(study, started, wall, args.mark)
        write_table(args, base, base_metrics, results)
        return
    init_ray(args.executor, args.workers)
    try:
        # Untimed: the first run on fresh Ray workers pays their start-up (imports, the objective's first
        # unpickling); a short run first leaves both timed arms the same warm workers.
        warmup = experiment(
            name="es-warmup", checkpoint=base, limit=args.limit, sampler="random", trials=args.workers,
            workers=args.workers, executor=args.executor, finetune={**finetune, "epochs": 1}, early_stopping=False,
        )
        say("warm-up run (not timed)")
        run(warmup, args.work / "warmup", lambda line: None)
        for sampler in samplers:
            for enabled in (False, True):
                arm = "on" if enabled else "off"
                exp = experiment(
                    name=f"es-{sampler}-{arm}", checkpoint=base, limit=args.limit, sampler=sampler, trials=args.trials,
                    workers=args.workers, executor=args.executor, finetune=finetune, early_stopping=enabled,
                    sampler_options=SAMPLER_OPTIONS.get(sampler), seed=args.seed,
                )
                say(f"{sampler}, early stopping {arm}: {args.trials} trials")
                study, started, wall = run(exp, args.work / f"{sampler}-{arm}", echo_to(f"[{sampler} {arm}]"))
                results[sampler, arm] = summarise(study, started, wall, args.mark)
                r = results[sampler, arm]
                say(f"{sampler} {arm}: HV@{args.mark} {r['hv_mark']:.4f}  final HV {r['hv_final']:.4f}  "
                    f"pruned {r['pruned']}  {wall:.0f} s")
    finally:
        shutdown_ray()
    write_table(args, base, base_metrics, results)


def write_table(args, base: Path, base_metrics: dict, results: dict) -> None:
    lines = [
        f"| sampler | early stopping | target HV (95% of off's HV@{args.mark}) | time to target s (trials finished) | "
        f"HV@{args.mark} | final HV ({args.trials} trials) | front size | pruned | failed | epochs reported | worker s (all trials) | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    keep = True
    samplers = sorted({s for s, _ in results}, key=[s for s, _ in results].index)
    for sampler in samplers:
        off, on = results[sampler, "off"], results[sampler, "on"]
        target = TARGET_SHARE * off["hv_mark"]
        reach = {}
        for arm, r in (("off", off), ("on", on)):
            reach[arm] = first_reach(r["timeline"], target)
            shown = f"{reach[arm][0]:.0f} ({reach[arm][1]})" if reach[arm] else "not reached"
            lines.append(
                f"| {sampler} | {arm} | {target:.4f} | {shown} | {r['hv_mark']:.4f} | {r['hv_final']:.4f} | "
                f"{len(r['front'])} | {r['pruned']} | {r['failed']} | {r['steps_run']} | {r['trial_seconds']:.0f} | {r['wall']:.0f} |"
            )
        stopped, same, lost = false_stops(on["study"], off["study"])
        saved = 1 - on["trial_seconds"] / off["trial_seconds"] if off["trial_seconds"] else float("nan")
        keep = keep and saved >= MIN_SAVING and on["hv_final"] >= off["hv_final"] - HV_TOLERANCE
        keep = keep and len(on["front"]) >= len(off["front"])
        by_step = ", ".join(f"{n} at step {step}" for step, n in stops_by_step(on["study"]).items()) or "none"
        replays = "; ".join(
            "warmup_steps {}: {} of {} trials stopped, {} of them on its final front, {} of {} epochs saved".format(
                warmup, *(lambda r: (r[0], r[3], r[1], r[2], args.epochs * r[3]))(replay(off["study"], warmup, args.epochs))
            )
            for warmup in (0, 1)
        )
        faster = (
            f"{reach['on'][0]:.0f} s against {reach['off'][0]:.0f} s" if reach["on"] and reach["off"]
            else f"on: {'reached' if reach['on'] else 'not reached'}, off: {'reached' if reach['off'] else 'not reached'}"
        )
        verdicts.append(
            f"- {sampler}: time to the target {faster}; final HV on {on['hv_final']:.4f} vs off {off['hv_final']:.4f} "
            f"({on['hv_final'] - off['hv_final']:+.4f}); worker time {saved:.0%} saved "
            f"({on['trial_seconds']:.0f} s vs {off['trial_seconds']:.0f} s); {stopped} trials stopped, {same} of them "
            f"with a plan the off run also ran (same trial number and parameters), {lost} of those on the off run's final front. "
            f"Stops by step: {by_step}. The rule replayed on the off run's curves: {replays}."
        )
    defaults = EarlyStoppingSection()
    executor = (
        f"Ray executor, {args.workers} workers (1 CPU and 1 torch thread per trial), Ray started once for all runs"
        if args.executor == "ray" else "local executor"
    )
    settings = [
        base_line(base_metrics, base, args.limit, args.base_epochs),
        f"data: `{MNIST}`, `data.limit: {args.limit}` (the base's own records, seed 0; a "
        f"separate base from sample_efficiency.py's, so that the trials' validation split is one the base never trained on)",
        "method: `filters: {criterion: l1, max_ratio: 0.9}` (4 units); objectives `accuracy` (validation) and `compression`, "
        "no constraints",
        f"trial: prune, BN recalibration, fine-tune `objective.finetune: {{epochs: {args.epochs}, lr: 0.01}}` (no max_steps), "
        f"validation accuracy reported at steps 0..{args.epochs}; test accuracy evaluated only by trials that finish",
        f"search: `search.trials: {args.trials}`, seed {args.seed}, sampler options {SAMPLER_OPTIONS}; " + executor,
        f"early stopping on = `search.early_stopping: {{enabled: true}}` with the defaults margin {defaults.margin}, "
        f"min_completed {defaults.min_completed}, warmup_steps {getattr(defaults, 'warmup_steps', 'n/a')}; off = `enabled: false`",
        f"time to target: seconds from the run's start until the front of the trials finished so far (in finishing order) "
        f"first reaches {TARGET_SHARE:.0%} of the HV of the off run's first {args.mark} trials (by number); "
        "epochs reported: reports (steps 0..E) summed over all trials; worker s: the trials' own seconds summed",
        HV_NOTE,
        "HV saturates early in this normalisation: check the trials-finished count of the time-to-target column against "
        f"the {EarlyStoppingSection().min_completed} completed trials early stopping needs before it judges anything; "
        "a target reached within the first few trials measures start-up, not early stopping.",
        "One seed per arm; once the first trial is stopped the sampler sees different data, so later plans differ between arms.",
    ]
    if args.table_only:
        settings.append(
            f"--table-only: nothing was run for this table; it was rebuilt from the studies in "
            f"`{args.work.relative_to(ROOT) if args.work.is_relative_to(ROOT) else args.work}` left by a run of the same "
            "command without --table-only; times count from each run's first trial start (the run's own set-up, about "
            "a second of data loading, is not in them)"
        )
    verdicts.append(
        f"\nVerdict by the rule (for every sampler: worker time saved >= {MIN_SAVING:.0%}, final HV no more than "
        f"{HV_TOLERANCE} below off's, front no smaller): early stopping on by default is "
        f"**{'supported' if keep else 'not supported'}** by these runs."
    )
    text = (
        header("Early stopping on against off (LeNet-5, MNIST, filter pruning)")
        + "".join(f"- {line}\n" for line in settings)
        + "\n" + "\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n"
    )
    if args.quick:
        path = args.work / "early_stopping_quick.md"
        path.write_text(text)
    else:
        path = write_result("early_stopping.md", text)
    print("\n".join(lines))
    print("\n".join(verdicts))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
