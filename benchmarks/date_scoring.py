"""The discriminator's work as of the run's date, in one run: the date's pair features written to
``ranker_features`` and scored from there (reference: what a run did until now, and what evaluate still
does) against scored as they are computed, nothing but the scores written (what a run does now).

    python benchmarks/date_scoring.py --work DIR [--repeat 2]

DIR: one size's folder that `benchmarks/scale.py --users N --work W --keep` left (W/users-N-items-M: its
data/genre-spark.yaml and a warehouse with the ranker trained as of the profile's last day). Each case is
:func:`genre_spark.learned.stage.run_discriminator` with that model reused and a run id of its own (every
write a real commit, nothing skipped), interleaved over ``--repeat`` rounds. The two must write the same
scores (within 1e-9, relative) or the script fails.
Results: benchmarks/results/date_scoring.md, medians and the ratio to the reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from machine import interleaved, ratio_table, scale_settings, write_report  # benchmarks/machine.py
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from ranker_steps import check_same  # benchmarks/ranker_steps.py

from genre_spark import schemas as S
from genre_spark import synthetic
from genre_spark.learned.features import feature_columns
from genre_spark.learned.stage import MODEL_KIND, ModelNote, run_discriminator
from genre_spark.pipeline import RunContext, strategy_decider
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store
from genre_spark.strategy import context_for, load_strategies

RESULTS = Path(__file__).parent / "results" / "date_scoring.md"
REFERENCE = "features written, then scored (reference)"
FUSED = "scored as computed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a size's folder under scale.py's --work")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    overrides = [f"storage.warehouse={args.work / 'warehouse'}", "scoring.bi_encoder.enabled=false"]
    settings = scale_settings([args.work / "data" / "genre-spark.yaml"], overrides)
    spark = build_spark_session(settings.spark)
    try:
        as_of = synthetic.load_profile().span_end
        ctx = RunContext(
            spark,
            open_store(spark, settings.storage),
            settings,
            as_of,
            "date-scoring",
            load_strategies(settings.strategies_file),
            context_for(as_of, 9, settings.features.hour_bands),
        )
        store, ranker = ctx.store, settings.discriminator
        latest = store.latest_model(MODEL_KIND)
        text = store.read_model_note(MODEL_KIND, latest) if latest else None
        if text is None:
            raise SystemExit(f"no trained ranker in {args.work}: run scale.py --keep first")
        note = ModelNote.from_json(text)
        if note.columns != feature_columns(frozenset(ranker.without)):
            raise SystemExit(f"the latest model in {args.work} was trained on other columns: rerun scale.py")
        decide = strategy_decider(ctx)
        versions: dict[str, int | None] = {}
        rounds = iter(range(10**6))

        def case(keep: bool) -> None:
            run_id = f"date-scoring-{next(rounds)}"
            result = run_discriminator(
                store, ctx.history, ranker, decide, ctx.strategies, run_id, note.fingerprint, note, keep
            )
            versions[REFERENCE if keep else FUSED] = result.write.version

        times = interleaved({REFERENCE: lambda: case(True), FUSED: lambda: case(False)}, args.repeat)

        def scores(name: str) -> DataFrame:
            table = store.read_table(S.RANKER_SCORES, version=versions[name])
            on_date = table.filter(F.col(S.AS_OF) == F.lit(as_of))
            return on_date.select(S.USER_ID, S.ITEM_ID, S.LEARNED_SCORE, S.LEARNED_NEW_SCORE)

        check_same(scores(REFERENCE), scores(FUSED), tolerance=1e-9)
        pairs = scores(FUSED).count()
        users = scores(FUSED).select(S.USER_ID).distinct().count()
    finally:
        spark.stop()
    setup = (
        f"{pairs:,} candidate pairs of {users:,} users as of {as_of}, scored by the ranker trained there "
        f"(both models); {args.repeat} interleaved rounds; conf/local.yaml + conf/scale.yaml."
    )
    command = f"python benchmarks/date_scoring.py --work DIR --repeat {args.repeat}"
    table = ratio_table(times, REFERENCE, "the date's features and scores")
    write_report(RESULTS, "The date's scores without writing its features", command, setup, table)


if __name__ == "__main__":
    main()
