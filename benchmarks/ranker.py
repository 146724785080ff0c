"""The learned ranker's cost on synthetic users: the discriminator stage step by step, and its share of a run.

    python benchmarks/ranker.py --users 100000                 # the issue's size (about an hour on 2 cores)
    python benchmarks/ranker.py --users 100000 --cutoffs 1     # one training cut-off: half the stage runs

`genre-spark generate --users N` (the packaged profile, seed 0) writes a raw export under --work; ingest and
enrich run once; features, segments and candidates run for the as-of date T (the profile's last day) and for
each training cut-off (what earlier nightly runs would have left); then the discriminator stage for T, timed
step by step (labelled features of the cut-offs, the fit of both models, the features of T, scoring), and the
ranking of T. Settings: conf/local.yaml + conf/scale.yaml + the generated source config, scorers off (as in
benchmarks/scale.py). The share is the discriminator's seconds over the run of T (features, segments,
candidates, discriminator, ranking); the cut-offs' stages are listed apart.

Results: benchmarks/results/ranker.md.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from machine import write_report  # benchmarks/machine.py (scripts run from their folder)

from genre_spark import synthetic
from genre_spark.config import load_settings
from genre_spark.learned.features import feature_columns
from genre_spark.learned.stage import fingerprint, run_discriminator, training_cutoffs
from genre_spark.pipeline import RunContext, cutoff_context, run_stages, strategy_decider
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store
from genre_spark.strategy import context_for, load_strategies

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "ranker.md"
DATED = ["features", "segments", "candidates"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--cutoffs", type=int, default=None, help="training cut-offs (default: config)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/genre-spark-ranker-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    overrides = [f"storage.warehouse={args.work / 'warehouse'}", "scoring.bi_encoder.enabled=false"]
    if args.cutoffs:
        overrides.append(f"discriminator.cutoffs={args.cutoffs}")
    base = [ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml"]
    spark = build_spark_session(load_settings(base, overrides).spark)
    rows: list[tuple[str, float]] = []
    try:
        profile = synthetic.load_profile()
        started = time.perf_counter()
        events = synthetic.generate_events(spark, profile, args.users, seed=0)
        config = synthetic.write_generated(events, args.work / "data")
        rows.append(("generate (not a stage)", time.perf_counter() - started))
        settings = load_settings([*base, config], overrides)
        as_of = profile.span_end
        ctx = RunContext(
            spark,
            open_store(spark, settings.storage),
            settings,
            as_of,
            f"ranker-{args.users}",
            load_strategies(settings.strategies_file),
            context_for(as_of, 9, settings.features.hour_bands),
        )
        command = f"python benchmarks/ranker.py --users {args.users}" + (
            f" --cutoffs {args.cutoffs}" if args.cutoffs else ""
        )

        def report(run: list[tuple[str, float]], setup: str) -> None:  # after every step: a partial table
            write_report(RESULTS, "The learned ranker at scale", command, setup, table(rows, run))

        rows += [(f"{r.stage} (once)", r.seconds) for r in run_stages(ctx, ["ingest", "enrich"])]
        for day in training_cutoffs(as_of, settings.discriminator):
            past = cutoff_context(ctx, day)
            rows += [(f"cut-off {day}: {r.stage}", r.seconds) for r in run_stages(past, DATED)]
            report([], "in progress")
        run = [(r.stage, r.seconds) for r in run_stages(ctx, DATED)]
        report(run, "in progress")
        ranker = settings.discriminator
        wanted = fingerprint(ranker, feature_columns(frozenset(ranker.without)), ctx.stage_settings)
        decide = strategy_decider(ctx)
        result = run_discriminator(
            ctx.store, ctx.history, ranker, decide, ctx.strategies, ctx.run_id, wanted, reused=None
        )
        print(result.format(), flush=True)
        run += [(f"discriminator: {step}", s) for step, s in result.seconds.items()]
        report(run, "in progress")
        run += [(r.stage, r.seconds) for r in run_stages(ctx, ["ranking"])]
    finally:
        spark.stop()
    trained = result.note
    cap = settings.discriminator.max_training_users
    sample = "every label-window buyer" if cap is None else f"at most {cap:,} users each"
    setup = (
        f"{args.users:,} synthetic users as of {as_of}; {len(trained.cutoffs)} training cut-off(s), their "
        f"candidates for {sample} ({trained.queries:,} queries, {trained.pairs:,} pairs); "
        f"{result.scored:,} candidates scored; {settings.discriminator.n_estimators} trees, "
        f"{settings.discriminator.num_workers} worker(s)."
    )
    report(run, setup)


def table(rows: list[tuple[str, float]], run: list[tuple[str, float]]) -> list[str]:
    """The steps before the run of T as they are, then the run's steps with their share of it."""
    total = sum(s for _, s in run) or 1.0
    ranker = sum(s for name, s in run if name.startswith("discriminator"))
    lines = ["| step | seconds | share of the run of T |", "|---|---:|---:|"]
    lines += [f"| {name} | {s:,.1f} | |" for name, s in rows]
    lines += [f"| {name} | {s:,.1f} | {s / total:.1%} |" for name, s in run]
    if any(name == "ranking" for name, _ in run):
        lines += [
            f"| **run of T** | **{total:,.1f}** | 100% |",
            f"| **discriminator** | **{ranker:,.1f}** | **{ranker / total:.1%}** |",
        ]
    return lines


if __name__ == "__main__":
    main()
