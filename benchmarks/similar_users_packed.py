"""The similar-users source's sum over neighbours, in one run: a row per (user, neighbour, item) through the
shuffle (reference: the source until now) against each neighbour's items packed in arrays, unpacked after
the shuffle by user (:func:`genre_spark.candidates._neighbour_sums`, the source now).

    python benchmarks/similar_users_packed.py --work DIR [--repeat 2]

DIR: one size's folder that `benchmarks/scale.py --users N --work W --keep` left (W/users-N-items-M). The
source proposes for every user with a segment on the profile's last day, as the candidates stage does, into
Spark's noop sink over the persisted purchases; the cases are interleaved over ``--repeat`` rounds. Both
must propose the same items at the same ranks with the same details, scores within 1e-12 relative, or the
script fails.
Results: benchmarks/results/similar_users_packed.md, medians and the ratio to the reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from machine import compute, interleaved, ratio_table, scale_settings, write_report  # benchmarks/machine.py
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from ranker_steps import check_same  # benchmarks/ranker_steps.py

from genre_spark import candidates, synthetic
from genre_spark import schemas as S
from genre_spark.history import History
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

RESULTS = Path(__file__).parent / "results" / "similar_users_packed.md"
REFERENCE = "a row per (user, neighbour, item) (reference)"
PACKED = "packed by neighbour"


def flat_sums(neighbours: DataFrame, theirs: DataFrame) -> DataFrame:
    """The reference: the join unpacked, summed by (user, item) across a shuffle of its own."""
    return (
        neighbours.join(theirs, "_v")
        .groupBy("_u", "_i")
        .agg(
            F.sum(F.col("_sim") * F.col("w")).alias("_s"),
            F.count("*").alias("_buyers"),
            F.max("_total").alias("_total"),
            F.max("_k").alias("_k"),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a size's folder under scale.py's --work")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    overrides = [f"storage.warehouse={args.work / 'warehouse'}"]
    settings = scale_settings([args.work / "data" / "genre-spark.yaml"], overrides)
    spark = build_spark_session(settings.spark)
    packed = candidates._neighbour_sums
    try:
        as_of = synthetic.load_profile().span_end
        store = open_store(spark, settings.storage)
        purchases = History.read(store, as_of).purchases().persist(StorageLevel.MEMORY_AND_DISK)
        users = store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(as_of)).select(S.USER_ID)
        source, limit = settings.candidates.similar_users, settings.candidates.limits["similar_users"]

        def proposed(sums: object) -> DataFrame:
            candidates._neighbour_sums = sums  # type: ignore[assignment]
            return candidates.similar_users(purchases, users, as_of, source, limit)

        # ranks and details must match exactly: compared as numbers, a mismatch is any difference
        def keyed(frame: DataFrame) -> DataFrame:
            return frame.select(
                S.USER_ID,
                S.ITEM_ID,
                "source_score",
                F.col("source_rank").cast("double"),
                F.xxhash64("detail").cast("double").alias("detail"),
            )

        check_same(keyed(proposed(flat_sums)), keyed(proposed(packed)), tolerance=1e-12)
        rows = proposed(packed).count()
        times = interleaved(
            {
                REFERENCE: lambda: compute(proposed(flat_sums)),
                PACKED: lambda: compute(proposed(packed)),
            },
            args.repeat,
        )
        n_users = users.count()
    finally:
        candidates._neighbour_sums = packed
        spark.stop()
    setup = (
        f"the similar-users source as of {as_of} for {n_users:,} users ({rows:,} candidates; "
        f"{source.neighbours} neighbours, {source.items_per_neighbour} items each); {args.repeat} "
        "interleaved rounds into the noop sink; conf/local.yaml + conf/scale.yaml."
    )
    command = f"python benchmarks/similar_users_packed.py --work DIR --repeat {args.repeat}"
    table = ratio_table(times, REFERENCE, "similar-users source")
    write_report(RESULTS, "The similar-users source's sum over neighbours, packed", command, setup, table)


if __name__ == "__main__":
    main()
