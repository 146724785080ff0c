"""Cost of the embedded Delta commit over a plain Spark Parquet write, measured in one run.

    python benchmarks/storage_write.py --rows 5000000

Writes the same DataFrame (cached first, so generation is not timed) three ways, interleaved over
``--repeat`` rounds, and reports the median time of each and the ratio to the plain Parquet write.
Results go to benchmarks/results/storage_write.md (with the machine's cores and memory).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from machine import (  # benchmarks/machine.py (scripts run from their folder)
    interleaved,
    ratio_table,
    write_report,
)
from pyspark.sql import functions as F

from genre_spark.config import load_settings
from genre_spark.session import build_spark_session
from genre_spark.storage.embedded import EmbeddedDeltaStore

RESULTS = Path(__file__).parent / "results" / "storage_write.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    settings = load_settings([Path(__file__).parents[1] / "conf" / "local.yaml"])
    spark = build_spark_session(settings.spark)
    df = (
        spark.range(args.rows)
        .select(
            F.col("id").cast("string").alias("user_id"),
            (F.col("id") % 5000).cast("string").alias("item_id"),
            (F.rand(1) * 100).alias("score"),
            F.timestamp_seconds(1_291_000_000 + F.col("id") % 31_536_000).alias("event_ts"),
            F.date_add(F.lit("2011-12-01").cast("date"), (F.col("id") % 4).cast("int")).alias("as_of"),
        )
        .repartition(4)
        .cache()
    )
    df.count()
    root = Path(tempfile.mkdtemp(prefix="genre-bench-"))
    store = EmbeddedDeltaStore(spark, str(root / "wh"))
    counter = iter(range(1_000_000))

    def plain() -> None:
        df.write.parquet(str(root / f"plain-{next(counter)}"))

    def embedded() -> None:
        store.write_table(df, f"delta_{next(counter)}", mode="append", run_id="bench")

    def embedded_partitioned() -> None:
        store.write_table(df, f"delta_{next(counter)}", mode="append", run_id="bench", partition_by=["as_of"])

    cases: dict[str, Callable[[], None]] = {
        "plain Spark Parquet write": plain,
        "embedded Delta (Parquet + delta-rs commit)": embedded,
        "embedded Delta, partitioned by as_of": embedded_partitioned,
    }
    times = interleaved(cases, args.repeat)
    shutil.rmtree(root)
    spark.stop()

    write_report(
        RESULTS,
        "Embedded Delta write vs plain Parquet write",
        f"python benchmarks/storage_write.py --rows {args.rows} --repeat {args.repeat}",
        f"{args.rows:,} rows x 5 columns, 4 partitions, medians of {args.repeat} interleaved rounds.",
        ratio_table(times, "plain Spark Parquet write", "write"),
    )


if __name__ == "__main__":
    main()
