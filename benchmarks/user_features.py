"""The features stage's per-user aggregation: distinct counts as set sizes against the count-distincts they
replaced, in one run.

    python benchmarks/user_features.py --warehouse W --as-of 2011-12-09

W: a warehouse with ingested events and items (for instance the one `benchmarks/ranker.py --work DIR` leaves
under DIR/warehouse). Interleaved over ``--repeat`` rounds, each variant computes every user's features as of
the date (:func:`genre_spark.features.compute_user_features`) into Spark's noop sink:

- count-distinct (reference): the previous aggregation, kept here as the baseline. Two exact count-distincts
  (orders, items) in one aggregation: Spark copies every event once per distinct column (an Expand) and
  shuffles the copies.
- set sizes: the current one, the sizes of the per-user sets of orders and items.

Both must give the same rows (the counts exactly, the sums within 1e-9 relative), or the script fails.
Results: benchmarks/results/user_features.md, medians and ratios to the reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from machine import compute, interleaved, ratio_table, write_report  # benchmarks/machine.py
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from genre_spark import features
from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.history import History
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "user_features.md"
CURRENT = features._spend_aggregates
Aggregates = Callable[[Mapping[str, tuple[int, int]], int], list[Column]]  # hour bands, categories -> columns


def count_distincts(hour_bands: Mapping[str, tuple[int, int]], n_categories: int) -> list[Column]:
    """The aggregates with the two distinct counts as count-distincts (the previous code)."""
    is_purchase = F.col(S.EVENT_TYPE) == S.PURCHASE
    previous = {
        "frequency": F.countDistinct(F.when(is_purchase, F.col(S.ORDER_ID))),
        "n_distinct_items": F.countDistinct(F.when(is_purchase, F.col(S.ITEM_ID))),
    }
    columns = CURRENT(hour_bands, n_categories)
    named = {name: i for i, c in enumerate(columns) for name in previous if str(c).endswith(f"AS {name}'>")}
    assert len(named) == len(previous), "the features' aggregates no longer name these columns"
    for name, i in named.items():
        columns[i] = previous[name].alias(name)
    return columns


@contextmanager
def aggregates(make: Aggregates) -> Iterator[None]:
    features._spend_aggregates = make  # type: ignore[assignment]
    try:
        yield
    finally:
        features._spend_aggregates = CURRENT  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument(
        "--conf", type=Path, action="append", help="default: conf/local.yaml + conf/scale.yaml"
    )
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    conf = args.conf or [ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml"]
    settings = load_settings(conf, [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        history = History.read(store, args.as_of)
        n_categories = settings.enrich.n_categories
        s = settings.features

        def users(make: Aggregates) -> DataFrame:
            with aggregates(make):
                return features.compute_user_features(history, s.hour_bands, n_categories, s.top_categories)

        check_same(users(count_distincts), users(CURRENT))
        cases = {
            "count-distinct (reference)": lambda: compute(users(count_distincts)),
            "set sizes": lambda: compute(users(CURRENT)),
        }
        times = interleaved(cases, args.repeat)
        rows = history.events.count()
    finally:
        spark.stop()
    setup = f"{rows:,} events before {args.as_of}; {args.repeat} interleaved rounds."
    command = f"python benchmarks/user_features.py --warehouse W --as-of {args.as_of} --repeat {args.repeat}"
    table = ratio_table(times, "count-distinct (reference)", "per-user features")
    write_report(RESULTS, "The features stage's aggregation", command, setup, table)


def check_same(reference: DataFrame, current: DataFrame) -> None:
    """The same users and counts, sums within 1e-9 relative."""
    both = reference.alias("r").join(current.alias("c"), S.USER_ID, "full_outer")
    close = F.abs(F.col("r.monetary") - F.col("c.monetary")) <= 1e-9 * F.greatest(
        F.abs("r.monetary"), F.lit(1.0)
    )
    differ = both.filter(
        F.col("r.frequency").isNull()
        | F.col("c.frequency").isNull()
        | (F.col("r.frequency") != F.col("c.frequency"))
        | (F.col("r.n_distinct_items") != F.col("c.n_distinct_items"))
        | ~close
    ).count()
    if differ:
        raise SystemExit(f"{differ} users' features differ between the two aggregations")


if __name__ == "__main__":
    main()
