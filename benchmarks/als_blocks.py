"""The ALS source's time by its number of user/item blocks (``candidates.als.num_blocks``) or by the cap on
the users a training cut-off's fit reads (``candidates.als.max_fit_users``), in one run.

    python benchmarks/als_blocks.py --warehouse W --conf W/../data/genre-spark.yaml --as-of DATE
    python benchmarks/als_blocks.py --warehouse W --conf W/../data/genre-spark.yaml --as-of DATE \
        --fit-users 0 50000 20000

W: a warehouse holding the date's events and items (what `benchmarks/scale.py --keep` leaves; DATE e.g. one
of its training cut-offs, 2011-09-16, or its run date). The fit is on everyone's purchases before DATE (with
--fit-users N: the sample's and a hash sample of the others', N users in all; 0: everyone's), the
candidates for ``--users`` users (a seeded hash sample; a training cut-off proposes for 5,000). Settings:
conf/local.yaml + conf/scale.yaml + --conf, only the block count (or the cap) changed. Each case fits and
proposes into Spark's noop sink, interleaved over ``--repeat`` rounds; the first value is the reference. The
share of each case's proposals the reference also makes is reported beside (ALS's blocks change its random
start). Results: benchmarks/results/als_blocks.md, or als_fit_users.md with --fit-users.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from machine import compute, interleaved, ratio_table, scale_settings, write_report  # benchmarks/machine.py
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import als_candidates
from genre_spark.history import History, purchase_history
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--conf", type=Path, action="append", default=[])
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    varied = parser.add_mutually_exclusive_group()
    varied.add_argument("--blocks", type=int, nargs="+", default=[8, 4, 2], help="the first: the reference")
    varied.add_argument("--fit-users", type=int, nargs="+", help="vary the fit's cap instead (0: none)")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    settings = scale_settings(args.conf, [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        history = purchase_history(History.read(store, args.as_of).purchases())
        history = history.persist(StorageLevel.MEMORY_AND_DISK)
        ratings = history.count()
        hashed = history.select(S.USER_ID).distinct().withColumn("_h", F.xxhash64(S.USER_ID, F.lit(0)))
        users = hashed.orderBy("_h").limit(args.users).select(S.USER_ID).localCheckpoint()
        limit = settings.candidates.limits["als"]

        if args.fit_users:  # the cap, at the configured blocks
            knob, values, unit = "fit users", args.fit_users, "users fitted"
        else:
            knob, values, unit = "blocks", args.blocks, "blocks"

        def proposals(value: int) -> DataFrame:
            als = settings.candidates.als
            if args.fit_users:
                cap = value or None
            else:
                als, cap = als.model_copy(update={"num_blocks": value}), None
            return als_candidates(history, users, als, limit, cap).select(S.USER_ID, S.ITEM_ID)

        name = {v: f"{v or 'all'} {unit}" + (" (reference)" if v == values[0] else "") for v in values}
        cases = {name[v]: (lambda v=v: compute(proposals(v))) for v in values}
        times = interleaved(cases, args.repeat)
        reference = proposals(values[0]).localCheckpoint()
        total = reference.count()
        shared = {
            v: proposals(v).join(reference, [S.USER_ID, S.ITEM_ID], "left_semi").count() for v in values[1:]
        }
    finally:
        spark.stop()
    als = settings.candidates.als
    setup = (
        f"ALS rank {als.rank}, {als.max_iter} iterations"
        + (f", {als.num_blocks} blocks" if args.fit_users else "")
        + f" on {ratings:,} (user, item) ratings before {args.as_of}, {limit} items for {args.users:,} "
        f"users; {args.repeat} interleaved rounds. Shared with the reference's {total:,} proposals: "
        + ", ".join(f"{name[v]} {shared[v] / total:.1%}" for v in values[1:])
        + "."
    )
    command = (
        f"python benchmarks/als_blocks.py --warehouse W --as-of {args.as_of} "
        f"--{knob.replace(' ', '-')} {' '.join(map(str, values))} --users {args.users} --repeat {args.repeat}"
    )
    table = ratio_table(times, name[values[0]], "the ALS source")
    out = RESULTS / ("als_fit_users.md" if args.fit_users else "als_blocks.md")
    title = "ALS by the users its fit reads" if args.fit_users else "ALS by its number of blocks"
    write_report(out, title, command, setup, table)


if __name__ == "__main__":
    main()
