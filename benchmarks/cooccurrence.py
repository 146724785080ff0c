"""Co-occurrence neighbours: the pair-key implementation against the self-join it replaced, in one run.

    python benchmarks/cooccurrence.py --users 20000

Purchases of ``--users`` synthetic customers (the packaged profile, seed 0; products only, no guests, no
returns) are cached first, so neither generation nor parsing is timed. Then, interleaved over
``--repeat`` rounds, each implementation computes the top neighbours per item (written to Spark's noop
sink):

- self-join (reference): the previous implementation, kept here as the baseline. Distinct (order, item)
  rows are joined with themselves on the order, pairs grouped by their two item ids.
- pair keys: :func:`genre_spark.candidates.cooccurrence_neighbours`. Items are numbered, each order is a
  sorted array and each pair a 64-bit key, counted by one hash aggregation.
- pair keys, capped: the same, with ``--max-orders`` recent orders (the default cap
  ``candidates.co_occurrence_max_orders``; it only binds above that many orders).

The uncapped result must equal the reference (same pairs, scores within 1e-12), or the script fails.
Results: benchmarks/results/cooccurrence.md, with medians and ratios to the reference.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from machine import (  # benchmarks/machine.py (scripts run from their folder)
    compute,
    interleaved,
    ratio_table,
    write_report,
)
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark import synthetic
from genre_spark.candidates import cooccurrence_neighbours
from genre_spark.config import load_settings
from genre_spark.session import build_spark_session

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "cooccurrence.md"


def self_join_neighbours(
    purchases: DataFrame, max_basket_size: int, min_co_count: int, per_item: int
) -> DataFrame:
    """The implementation the pair keys replaced (before commit b2a2043), kept as the reference."""
    baskets = purchases.select(S.ORDER_ID, S.ITEM_ID).distinct()
    sizes = baskets.groupBy(S.ORDER_ID).count().filter(F.col("count") <= max_basket_size).select(S.ORDER_ID)
    baskets = baskets.join(sizes, S.ORDER_ID)
    item_orders = baskets.groupBy(S.ITEM_ID).agg(F.count("*").alias("n"))
    left = baskets.select(S.ORDER_ID, F.col(S.ITEM_ID).alias("a"))
    right = baskets.select(S.ORDER_ID, F.col(S.ITEM_ID).alias("b"))
    half = (
        left.join(right, S.ORDER_ID)
        .filter(F.col("a") < F.col("b"))
        .groupBy("a", "b")
        .agg(F.count("*").alias("co"))
        .filter(F.col("co") >= min_co_count)
    )
    pairs = half.unionByName(half.select(F.col("b").alias("a"), F.col("a").alias("b"), "co"))
    na = item_orders.select(F.col(S.ITEM_ID).alias("a"), F.col("n").alias("na"))
    nb = item_orders.select(F.col(S.ITEM_ID).alias("b"), F.col("n").alias("nb"))
    scored = (
        pairs.join(na, "a")
        .join(nb, "b")
        .select(
            F.col("a").alias(S.ITEM_ID),
            F.col("b").alias("neighbour_id"),
            (F.col("co") / (F.col("na") + F.col("nb") - F.col("co"))).alias("score"),
        )
    )
    w = Window.partitionBy(S.ITEM_ID).orderBy(F.desc("score"), F.asc("neighbour_id"))
    return scored.withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= per_item).drop("_r")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-orders", type=int, default=None, help="default: the configured cap")
    args = parser.parse_args()

    settings = load_settings([ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml"])
    cs = settings.candidates
    max_orders = args.max_orders or cs.co_occurrence_max_orders
    spark = build_spark_session(settings.spark)
    raw = synthetic.generate_events(spark, synthetic.load_profile(), args.users, seed=0)
    c = synthetic.COLUMNS
    purchases = (
        raw.select(
            F.col(c[S.USER_ID]).alias(S.USER_ID),
            F.col(c[S.ITEM_ID]).alias(S.ITEM_ID),
            F.col(c[S.ORDER_ID]).alias(S.ORDER_ID),
            F.to_timestamp(c[S.EVENT_TS]).alias(S.EVENT_TS),
        )
        .filter(
            F.col(S.USER_ID).isNotNull()
            & ~F.col(S.ORDER_ID).startswith("C")
            & (F.col(S.ITEM_ID) != synthetic.NON_PRODUCT_CODE)
        )
        .cache()
    )
    lines = purchases.count()
    orders = purchases.select(S.ORDER_ID).distinct().count()

    def reference() -> DataFrame:
        return self_join_neighbours(purchases, cs.max_basket_size, cs.min_co_count, cs.neighbours_per_item)

    def pair_keys() -> DataFrame:
        return cooccurrence_neighbours(purchases, cs.max_basket_size, cs.min_co_count, cs.neighbours_per_item)

    def capped() -> DataFrame:
        return cooccurrence_neighbours(
            purchases, cs.max_basket_size, cs.min_co_count, cs.neighbours_per_item, max_orders
        )

    _check_equal(reference(), pair_keys())
    cases: dict[str, Callable[[], DataFrame]] = {
        "self-join (reference)": reference,
        "pair keys": pair_keys,
        f"pair keys, at most {max_orders:,} recent orders": capped,
    }
    # building the plan is timed too: it numbers the items
    times = interleaved({name: lambda b=b: compute(b()) for name, b in cases.items()}, args.repeat)
    spark.stop()

    write_report(
        RESULTS,
        "Co-occurrence neighbours: pair keys vs self-join",
        f"python benchmarks/cooccurrence.py --users {args.users} --repeat {args.repeat}",
        "local Spark with conf/local.yaml + conf/scale.yaml; "
        f"{lines:,} purchase lines in {orders:,} orders (cached); max_basket_size {cs.max_basket_size}, "
        f"min_co_count {cs.min_co_count}, {cs.neighbours_per_item} neighbours per item; medians of "
        f"{args.repeat} interleaved rounds. Uncapped, they equal the reference's neighbours (checked).",
        ratio_table(times, "self-join (reference)", "implementation", digits=1),
    )


def _check_equal(expected: DataFrame, got: DataFrame) -> None:
    key = [S.ITEM_ID, "neighbour_id"]
    joined = expected.alias("e").join(got.alias("g"), key, "full_outer")
    mismatches = joined.filter(
        F.col("e.score").isNull()
        | F.col("g.score").isNull()
        | (F.abs(F.col("e.score") - F.col("g.score")) > 1e-12)
    ).count()
    if mismatches:
        raise SystemExit(f"pair keys and self-join disagree on {mismatches:,} (item, neighbour) rows")


if __name__ == "__main__":
    main()
