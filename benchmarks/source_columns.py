"""The ranker's candidate-source columns (each source's normalised score and rank per pair) against what
they replaced, in one run: the best score per user and source from one aggregate of the pivoted pairs
(:func:`genre_spark.learned.features._sources`) against a window over every candidate row (reference).

    python benchmarks/source_columns.py --warehouse W --conf W/../data/genre-spark.yaml --as-of DATE

W: a warehouse holding the date's candidates (what `benchmarks/scale.py --keep` leaves; DATE its run date,
e.g. 2011-12-09, where every user has candidates). Settings: conf/local.yaml + conf/scale.yaml + --conf.
Both read the date's candidates partitioned by user, as :func:`~genre_spark.learned.features.pair_features`
does, into Spark's noop sink, interleaved over ``--repeat`` rounds; they must give the same rows (equal
values) for a tenth of the users, or the script fails. Results: benchmarks/results/source_columns.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from machine import interleaved, ratio_table, write_report  # benchmarks/machine.py
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidate_scores import normalised_score
from genre_spark.config import load_settings
from genre_spark.learned.features import MISSING_RANK, _sources
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "source_columns.md"
REFERENCE = "a window per user and source (reference)"


def windowed(candidates: DataFrame) -> DataFrame:
    """The previous source columns: every candidate row normalised by a window, then pivoted."""
    per_source = (
        candidates.withColumn("_norm", normalised_score())
        .groupBy(S.USER_ID, S.ITEM_ID)
        .pivot("source", list(S.CANDIDATE_SOURCES))
        .agg(F.max("_norm").alias("score"), F.min("source_rank").cast("double").alias("rank"))
    )
    proposed = [F.col(f"{s}_score").isNotNull().cast("double") for s in S.CANDIDATE_SOURCES]
    return per_source.select(
        S.USER_ID,
        S.ITEM_ID,
        *[F.coalesce(F.col(f"{s}_score"), F.lit(0.0)).alias(f"{s}_score") for s in S.CANDIDATE_SOURCES],
        *[
            F.coalesce(F.col(f"{s}_rank"), F.lit(MISSING_RANK)).alias(f"{s}_rank")
            for s in S.CANDIDATE_SOURCES
        ],
        sum(proposed[1:], proposed[0]).alias("n_sources"),
    )


def noop(frame: Callable[[], DataFrame]) -> Callable[[], None]:
    return lambda: frame().write.format("noop").mode("overwrite").save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--conf", type=Path, action="append", default=[])
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    conf = [ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml", *args.conf]
    settings = load_settings(conf, [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        candidates = store.read_table(S.CANDIDATES).filter(F.col(S.AS_OF) == F.lit(args.as_of))
        by_user = candidates.repartition(S.USER_ID)
        tenth = by_user.filter(F.abs(F.xxhash64(S.USER_ID)) % 10 == 0)  # the check on a tenth of the users
        reference, current = windowed(tenth), _sources(tenth)
        differ = reference.exceptAll(current).count() + current.exceptAll(reference).count()
        if differ:
            raise SystemExit(f"{differ} rows differ between the reference and the current source columns")
        cases = {
            REFERENCE: noop(lambda: windowed(by_user)),
            "an aggregate per user": noop(lambda: _sources(by_user)),
        }
        times = interleaved(cases, args.repeat)
        rows, users = candidates.count(), candidates.select(S.USER_ID).distinct().count()
    finally:
        spark.stop()
    setup = (
        f"{rows:,} candidate rows of {users:,} users as of {args.as_of}; {args.repeat} interleaved rounds."
    )
    command = f"python benchmarks/source_columns.py --warehouse W --as-of {args.as_of} --repeat {args.repeat}"
    table = ratio_table(times, REFERENCE, "source columns of the ranker's pairs")
    write_report(RESULTS, "The ranker's source columns against a window per row", command, setup, table)


if __name__ == "__main__":
    main()
