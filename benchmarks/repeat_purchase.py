"""How much of what customers buy next did they buy before? (the case for the buy-again source)

    python benchmarks/repeat_purchase.py --warehouse warehouse --as-of 2011-09-01 --horizon-days 30

Reads the ingested `events` table; for the purchases in [as_of, as_of + horizon) by users who bought before
as_of, reports the share of (user, item) pairs the user had already bought before as_of. Written to
benchmarks/results/repeat_purchase.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.session import build_spark_session
from genre_spark.storage.embedded import EmbeddedDeltaStore

RESULTS = Path(__file__).parent / "results" / "repeat_purchase.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default="warehouse")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2011, 9, 1))
    parser.add_argument("--horizon-days", type=int, default=30)
    args = parser.parse_args()
    spark = build_spark_session(load_settings([Path(__file__).parents[1] / "conf" / "local.yaml"]).spark)
    events = (
        EmbeddedDeltaStore(spark, args.warehouse)
        .read_table(S.EVENTS)
        .filter(F.col(S.EVENT_TYPE) == S.PURCHASE)
    )
    start = F.lit(args.as_of.isoformat()).cast("timestamp")
    end = F.lit((args.as_of + dt.timedelta(days=args.horizon_days)).isoformat()).cast("timestamp")
    before = events.filter(F.col(S.EVENT_TS) < start).select(S.USER_ID, S.ITEM_ID).distinct()
    after = (
        events.filter((F.col(S.EVENT_TS) >= start) & (F.col(S.EVENT_TS) < end))
        .select(S.USER_ID, S.ITEM_ID)
        .distinct()
    )
    known_users = before.select(S.USER_ID).distinct()
    after = after.join(known_users, S.USER_ID, "left_semi")
    flagged = after.join(before.withColumn("_seen", F.lit(1)), [S.USER_ID, S.ITEM_ID], "left")
    row = flagged.agg(F.count("*").alias("pairs"), F.count("_seen").alias("repeats")).first()
    assert row is not None
    share = row["repeats"] / max(row["pairs"], 1)
    text = (
        "# Repeat purchases\n\n"
        f"`python benchmarks/repeat_purchase.py --as-of {args.as_of} --horizon-days {args.horizon_days}`: of "
        f"{row['pairs']:,} (user, item) purchases in the {args.horizon_days} days from {args.as_of} "
        f"by returning customers, {row['repeats']:,} ({share:.1%}) were items they had bought before.\n"
    )
    RESULTS.write_text(text)
    print(text)
    spark.stop()


if __name__ == "__main__":
    main()
