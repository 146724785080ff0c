"""Files per date of a per-date table, and the write time, with and without the rebalance by user.

    python benchmarks/compaction.py --users 1000000

Rows shaped like a date of `recommendations` (10 per user: ids, rank, score, strategy, a ~60-character
explanation) in 100 partitions, as the ranking plan left them at a million users (100 files of 1.2 MB per
date, benchmarks/results/scale.md). Written into a fresh embedded warehouse two ways, interleaved over
--repeat rounds: `TableStore.replace_date(..., rebalance=True)` (rows rebalanced by user: adaptive query
execution sizes the files) and the same partition replacement without the rebalance (as the other per-date
tables are written). Spark
settings: conf/local.yaml + conf/scale.yaml (AQE on, 128 MB advisory partition size).

Results: benchmarks/results/compaction.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from machine import interleaved, ratio_table, write_report  # benchmarks/machine.py
from pyspark.sql import functions as F

from genre_spark.config import load_settings
from genre_spark.session import build_spark_session
from genre_spark.storage.embedded import EmbeddedDeltaStore

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "compaction.md"
AS_OF = dt.date(2011, 12, 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings([ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml"])
    spark = build_spark_session(settings.spark)
    rows = args.users * 10
    lists = (
        spark.range(rows, numPartitions=100)
        .select(
            (F.col("id") / 10).cast("long").cast("string").alias("user_id"),
            (F.col("id") * 7919 % 7100).cast("string").alias("item_id"),
            (F.col("id") % 10 + 1).cast("int").alias("rank"),
            F.rand(1).alias("score"),
            F.lit("loyal").alias("strategy_id"),
            F.format_string(
                "bought 3 times, last %d days ago; often bought with item %d", F.col("id") % 90, "id"
            ).alias("explanation"),
            F.lit(AS_OF).alias("as_of"),
        )
        .cache()
    )
    lists.count()
    store = EmbeddedDeltaStore(spark, tempfile.mkdtemp(prefix="genre-compaction-"))
    counter = iter(range(1_000_000))
    written: dict[str, list[str]] = {"rebalanced": [], "as computed": []}

    def rebalanced() -> None:
        name = f"rebalanced_{next(counter)}"
        store.replace_date(lists, name, as_of=AS_OF, run_id="bench", stage="bench", rebalance=True)
        written["rebalanced"].append(name)

    def as_computed() -> None:
        name = f"as_computed_{next(counter)}"
        store.write_table(
            lists,
            name,
            mode="overwrite",
            run_id="bench",
            stage="bench",
            partition_by=["as_of"],
            replace_where={"as_of": AS_OF},
        )
        written["as computed"].append(name)

    times = interleaved({"as computed": as_computed, "rebalanced": rebalanced}, args.repeat)
    files = []
    for case, names in written.items():
        adds = pa.table(DeltaTable(store.table_path(names[-1])).get_add_actions(flatten=True))
        sizes = adds["size_bytes"].to_pylist()
        files.append(
            f"| {case} | {len(sizes)} | {statistics.mean(sizes) / 2**20:.1f} | {max(sizes) / 2**20:.1f} |"
        )
    spark.stop()
    write_report(
        RESULTS,
        "Files per date: rebalanced by user against as computed",
        f"python benchmarks/compaction.py --users {args.users} --repeat {args.repeat}",
        f"{rows:,} rows in 100 partitions (one date of a million users' lists), medians of {args.repeat} "
        "interleaved rounds; conf/local.yaml + conf/scale.yaml.",
        [
            *ratio_table(times, "as computed", "write of one date"),
            "",
            "| write | files per date | mean MB | largest MB |",
            "|---|---:|---:|---:|",
            *files,
        ],
    )


if __name__ == "__main__":
    main()
