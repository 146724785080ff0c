"""Does the ranker's fit depend on how its training rows are laid out? Fits on one warehouse's training set,
as the discriminator stage reads it (twice) and reshuffled, compared by their scores on a fixed slice of the
date's pairs (a twentieth of the users).

    python benchmarks/ranker_determinism.py --warehouse W --as-of 2011-09-01

W: a warehouse where `genre-spark run` or `evaluate` trained the ranker as of the date on the shipped sample
(conf/local.yaml). Results: benchmarks/results/ranker_determinism.md, the largest score difference of each fit
from the first (0 when the fit is a function of the data alone).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
from machine import write_report  # benchmarks/machine.py
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.learned import model as M
from genre_spark.learned.features import feature_columns
from genre_spark.learned.stage import training_cutoffs, training_set
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "ranker_determinism.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--conf", type=Path, default=ROOT / "conf" / "local.yaml")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings = load_settings([args.conf], [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    store = open_store(spark, settings.storage)
    ranker = settings.discriminator
    columns = feature_columns(frozenset(ranker.without))
    training = training_set(store, training_cutoffs(args.as_of, ranker), ranker)
    test = (
        store.read_table(S.RANKER_FEATURES)
        .filter(F.col(S.AS_OF) == F.lit(args.as_of))
        .filter(F.pmod(F.xxhash64(S.USER_ID), F.lit(20)) == 0)
    )
    layouts: dict[str, DataFrame] = {
        "as read": training,
        "as read, again": training,
        "reshuffled (7 partitions by item)": training.repartition(7, F.xxhash64(S.ITEM_ID)),
    }
    scores, seconds = {}, {}
    for name, data in layouts.items():
        started = time.perf_counter()
        fitted = M.fit(data, ranker, columns)
        scored = M.predict(fitted, test).select(S.USER_ID, S.ITEM_ID, "score").toPandas()
        scores[name] = scored.sort_values([S.USER_ID, S.ITEM_ID])["score"].to_numpy()
        seconds[name] = time.perf_counter() - started
    first = scores["as read"]
    table = ["| fit | max abs score difference from the first | s |", "|---|---:|---:|"]
    table += [
        f"| {name} | {float(np.max(np.abs(s - first))):.3g} | {seconds[name]:.0f} |"
        for name, s in scores.items()
    ]
    command = " ".join(["python benchmarks/ranker_determinism.py", *sys.argv[1:]])
    setup = f"{len(first):,} pairs scored, every fit on the same training set."
    write_report(args.out, "The ranker's fit against its rows' layout", command, setup, table)


if __name__ == "__main__":
    main()
