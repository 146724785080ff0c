"""The ``genre-spark`` command: ``genre-spark run [--stage S ...]`` or ``genre-spark <stage>``.

The one place (with ``jobs/``) where a Spark session is built. Exit codes: 0 done; otherwise the
error class's code (2 config, 3 input, 4 schema/table, 5 write conflict, 6 accounting, 1 other)
with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from genre_spark.config import Settings, default_run_id, load_settings
from genre_spark.errors import ConfigError, GenreSparkError
from genre_spark.pipeline import STAGES, RunContext, stages_before
from genre_spark.refresh import RunOutcome, backfill, evaluate_date, run_once
from genre_spark.strategy import context_for, load_strategies


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


Commands = argparse._SubParsersAction  # what add_subparsers returns


def build_parser() -> argparse.ArgumentParser:
    configured, common = _parents()
    parser = argparse.ArgumentParser(prog="genre-spark", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="run the pipeline (all stages, or --stage ...)")
    run.add_argument(
        "--stage",
        action="append",
        choices=list(STAGES),
        default=None,
        help="run only this stage (repeatable)",
    )
    for stage in STAGES:
        sub.add_parser(stage, parents=[common], help=f"run the {stage} stage alone")
    _add_dated_commands(sub, common)
    _add_synthetic_commands(sub, configured)
    return parser


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options of every command (config) and of the commands that run stages (date, hour, run id)."""
    configured = argparse.ArgumentParser(add_help=False)
    configured.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML merged over the packaged defaults (repeatable, later wins)",
    )
    configured.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one knob, e.g. --set storage.warehouse=/data/wh (repeatable)",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[configured])
    common.add_argument(
        "--as-of", type=_date, default=None, help="as-of date YYYY-MM-DD (default: today, UTC)"
    )
    common.add_argument(
        "--context-hour",
        type=int,
        default=None,
        metavar="H",
        help="hour (0-23) the lists are made for; picks hour-band strategies (default: none)",
    )
    common.add_argument(
        "--run-id",
        default=None,
        help="run id (default: <as-of>-<config hash>; a rerun with the same id is a no-op)",
    )

    return configured, common


def _add_dated_commands(sub: Commands, common: argparse.ArgumentParser) -> None:
    """backfill, evaluate and replay: commands over dates beyond one run."""
    backfill = sub.add_parser(
        "backfill",
        parents=[common],
        help="one run per date from --from to --to (run id per date; dates already done are skipped)",
    )
    backfill.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="date_to", type=_date, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument(
        "--stage", action="append", choices=list(STAGES), default=None, help="only this stage (repeatable)"
    )
    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
        help="fit on events before --as-of, compare the product and baselines with the next purchases",
    )
    evaluate.add_argument(
        "--horizon-days",
        type=int,
        default=None,
        help="ground-truth window (default: evaluation.horizon_days)",
    )
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="replay weeks of real purchases as feedback: adaptive strategy choice vs fixed strategies",
    )
    replay.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD")
    replay.add_argument("--weeks", type=int, default=None, help="weeks to replay (default: replay.weeks)")


def _add_synthetic_commands(sub: Commands, configured: argparse.ArgumentParser) -> None:
    """generate and fit-profile: synthetic data shaped like the sample."""
    generate = sub.add_parser(
        "generate",
        parents=[configured],
        help="write synthetic raw events shaped like the sample (and a config that ingests them)",
    )
    generate.add_argument("--users", type=int, required=True, help="customers to generate")
    generate.add_argument("--seed", type=int, default=0, help="same users + seed = same rows")
    generate.add_argument(
        "--items", type=int, default=None, help="catalog size (default: the sample's growth for --users)"
    )
    generate.add_argument("--out", required=True, help="output folder: events/*.csv.gz and genre-spark.yaml")
    generate.add_argument("--profile", default=None, help="profile JSON (default: the packaged one)")
    fit = sub.add_parser(
        "fit-profile",
        parents=[configured],
        help="measure the ingested events of the warehouse into a profile for `generate`",
    )
    fit.add_argument("--out", required=True, help="profile JSON to write")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except Exception as exc:
        return report_error(exc)


def report_error(exc: Exception) -> int:
    """The exit code of ``exc``, told on stderr: a library error (GenreSparkError: bad config, input,
    schema, conflict) in one line, anything else (a bug) with its traceback; both with the stage it
    happened in (the note ``run_stages`` adds)."""
    if isinstance(exc, GenreSparkError):
        lines = [f"genre-spark: error: {exc}", *getattr(exc, "__notes__", [])]
        print(" | ".join(lines).replace("\n", " | "), file=sys.stderr)
        return exc.exit_code
    traceback.print_exception(exc, file=sys.stderr)
    print(f"genre-spark: unexpected {type(exc).__name__} (a bug, not a config problem)", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace) -> int:
    # Config is parsed (and fails) before any Spark session exists.
    settings = load_settings(args.conf, args.overrides)
    if args.command in ("generate", "fit-profile"):
        return _synthetic(settings, args)
    strategies = load_strategies(settings.strategies_file)
    as_of = args.as_of or dt.datetime.now(dt.timezone.utc).date()
    context = context_for(as_of, args.context_hour, settings.features.hour_bands)
    run_id = args.run_id or default_run_id(settings, as_of, strategies, context.hour_band)
    if args.command == "evaluate":
        stages: list[str] | None = stages_before("discriminator")
    else:
        stages = [args.command] if args.command not in ("run", "backfill") else args.stage
    if args.command == "backfill" and (args.as_of or args.run_id):
        raise ConfigError("backfill derives the as-of date and the run id per date: drop --as-of/--run-id")
    if stages is None or "scoring" in stages:
        # model paths, tokenizers and answer tokens fail here, before the first Spark job
        from genre_spark.scoring.scorers import build_scorers

        build_scorers(settings.scoring)

    from genre_spark.session import build_spark_session  # heavy import after config checks
    from genre_spark.storage import open_store

    started = time.perf_counter()
    spark = build_spark_session(settings.spark, delta_extension=settings.storage.backend == "delta")
    try:
        store = open_store(spark, settings.storage)
        print(f"genre-spark run {run_id} as of {as_of}: warehouse {store.warehouse} ({store.backend} Delta)")
        ctx = RunContext(spark, store, settings, as_of, run_id, strategies, context)
        if args.command == "replay":
            _replay(ctx, args)
        elif args.command == "backfill":

            def context_of(day: dt.date) -> RunContext:
                hours = settings.features.hour_bands
                day_context = context_for(day, args.context_hour, hours)
                day_run = default_run_id(settings, day, strategies, day_context.hour_band)
                return RunContext(spark, store, settings, day, day_run, strategies, day_context)

            backfill(context_of, args.date_from, args.date_to, stages, _print_outcome)
        elif args.command == "evaluate":
            print(evaluate_date(ctx, args.horizon_days, _print_outcome).format())
        else:
            _print_outcome(run_once(ctx, stages))
        print(f"done in {time.perf_counter() - started:.1f} s; tables under {store.warehouse}")
    finally:
        spark.stop()
    return 0


def _replay(ctx: RunContext, args: argparse.Namespace) -> None:
    from genre_spark.replay import replay
    from genre_spark.scoring.scorers import build_scorers

    if args.as_of or args.run_id:
        raise ConfigError("replay derives the as-of date and the run id per week: drop --as-of/--run-id")
    build_scorers(ctx.settings.scoring)
    report = replay(
        ctx.spark, ctx.store, ctx.settings, ctx.strategies, args.date_from, args.weeks, args.context_hour
    )
    print(report.format())


def _synthetic(settings: Settings, args: argparse.Namespace) -> int:
    from genre_spark import schemas as S
    from genre_spark import synthetic
    from genre_spark.session import build_spark_session
    from genre_spark.storage import open_store

    if args.command == "generate":
        if args.users < 1:
            raise ConfigError(f"--users must be at least 1, got {args.users}")
        if args.items is not None and args.items < 1:
            raise ConfigError(f"--items must be at least 1, got {args.items}")
        profile = synthetic.load_profile(args.profile)  # fails before Spark starts
    started = time.perf_counter()
    spark = build_spark_session(settings.spark)
    try:
        if args.command == "generate":
            events = synthetic.generate_events(spark, profile, args.users, args.seed, args.items)
            config = synthetic.write_generated(events, args.out)
            catalog = args.items or profile.catalog_size(args.users)
            print(f"{args.users} users, {catalog} items: {Path(args.out).resolve() / 'events'}")
            print(
                f"run it: genre-spark run --conf conf/local.yaml --conf {config} --as-of {profile.span_end}"
            )
        else:
            store = open_store(spark, settings.storage)
            if not store.exists(S.EVENTS):
                raise ConfigError(f"no events table under {store.warehouse}: run `genre-spark ingest` first")
            quarantine = store.read_table(S.QUARANTINE) if store.exists(S.QUARANTINE) else None
            fitted = synthetic.fit_profile(store.read_table(S.EVENTS), store.read_table(S.ITEMS), quarantine)
            synthetic.save_profile(fitted, args.out)
            print(f"profile of {fitted.fitted_on} written to {args.out}")
    finally:
        spark.stop()
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _print_outcome(outcome: RunOutcome) -> None:
    print(outcome.format())


if __name__ == "__main__":
    sys.exit(main())
