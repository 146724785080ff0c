"""A candidates-stage step against what it replaced, in one run: the similar-users source with its user
vectors aggregated once (checkpointed, read by the cosines and by the neighbours' items) against once per
read (reference: the lazy checkpoints of ``genre_spark.candidates`` turned into no-ops).

    python benchmarks/candidate_steps.py --warehouse W --conf W/../data/genre-spark.yaml --as-of DATE

W: a warehouse holding the date's inputs of the candidates stage (what `benchmarks/scale.py --keep` leaves;
DATE one of its training cut-offs, e.g. 2011-09-16 at the run date 2011-12-09). The source proposes for the
cut-off's training sample (:func:`genre_spark.learned.stage.feature_users`), as the stage does there.
Settings: conf/local.yaml + conf/scale.yaml + --conf. Interleaved over ``--repeat`` rounds into Spark's
noop sink, over the persisted purchases. Both must propose the same (user, item) pairs with scores within
1e-9 (relative), or the script fails. Results: benchmarks/results/candidate_steps.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import operator
from collections.abc import Callable
from functools import reduce
from pathlib import Path
from unittest import mock

from machine import interleaved, ratio_table, write_report  # benchmarks/machine.py
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import similar_users
from genre_spark.config import load_settings
from genre_spark.history import History
from genre_spark.learned.stage import feature_users
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "candidate_steps.md"
REFERENCE = "vectors per read (reference)"


def without_lazy_checkpoints(frame: Callable[[], DataFrame]) -> Callable[[], DataFrame]:
    """``frame`` built with ``localCheckpoint(eager=False)`` a no-op (eager ones, the id numberings, kept)."""
    checkpoint = DataFrame.localCheckpoint

    def eager_only(self: DataFrame, eager: bool = True) -> DataFrame:
        return checkpoint(self, eager) if eager else self

    def build() -> DataFrame:
        with mock.patch.object(DataFrame, "localCheckpoint", eager_only):
            return frame()

    return build


def noop(frame: Callable[[], DataFrame]) -> Callable[[], None]:
    return lambda: frame().write.format("noop").mode("overwrite").save()


def check_same(reference: DataFrame, current: DataFrame, tolerance: float) -> None:
    """The same (user, item) candidates, source scores equal within ``tolerance`` (relative)."""
    keys = [S.USER_ID, S.ITEM_ID]
    r = reference.select(*keys, F.col("source_score").alias("_r"))
    c = current.select(*keys, F.col("source_score").alias("_c"))
    both = r.join(c, keys, "full_outer")
    same = reduce(
        operator.and_,
        [
            F.col("_r").isNotNull(),
            F.col("_c").isNotNull(),
            F.abs(F.col("_r") - F.col("_c")) <= tolerance * F.greatest(F.abs("_r"), F.lit(1.0)),
        ],
    )
    bad = both.filter(~same).count()
    if bad:
        raise SystemExit(f"{bad} candidates differ between the reference and the current step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--conf", type=Path, action="append", default=[])
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True, help="a training cut-off")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    conf = [ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml", *args.conf]
    settings = load_settings(conf, [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        history = History.read(store, args.as_of)
        sample = feature_users(store, history, settings.discriminator).localCheckpoint()
        purchases = history.purchases().persist(StorageLevel.MEMORY_AND_DISK)
        buyers = purchases.select(S.USER_ID).distinct().count()
        similar, limit = settings.candidates.similar_users, settings.candidates.limits["similar_users"]

        def source() -> DataFrame:
            return similar_users(purchases, sample, args.as_of, similar, limit)

        check_same(without_lazy_checkpoints(source)(), source(), tolerance=1e-9)
        cases = {REFERENCE: noop(without_lazy_checkpoints(source)), "vectors once": noop(source)}
        times = interleaved(cases, args.repeat)
        proposed_for = sample.count()
    finally:
        spark.stop()
    setup = (
        f"the similar-users source as of {args.as_of} (conf/scale.yaml's settings: {similar.neighbours} "
        f"neighbours, {similar.max_buyers_per_item} buyers per item, {similar.items_per_neighbour} items per "
        f"neighbour), proposing {limit} items for a training sample of {proposed_for:,} users among "
        f"{buyers:,} buyers; {args.repeat} interleaved rounds."
    )
    command = "python benchmarks/candidate_steps.py --warehouse W"
    command += f" --as-of {args.as_of} --repeat {args.repeat}"
    table = ratio_table(times, REFERENCE, "similar users at a training cut-off")
    write_report(RESULTS, "A candidates-stage step against what it replaced", command, setup, table)


if __name__ == "__main__":
    main()
