"""Item categories (KMeans over the title embeddings): how the partition count changes the fit's time.

    python benchmarks/categories.py --items 7101

Enrich used to run KMeans on ``spark.sql.shuffle.partitions`` partitions: 200 with conf/scale.yaml,
so every one of up to 50 iterations ran 200 tasks over a few thousand embeddings, and enrich took
66.8 s at 100k users against 20.4 s with 16 partitions (benchmarks/results/scale.md). It now uses
``ceil(items / enrich.kmeans_rows_per_partition)`` partitions. This times
:func:`genre_spark.enrich.fit_categories` (fit and assignment) at each count, interleaved over
``--repeat`` rounds, on ``--items`` unit vectors of 384 dimensions drawn around ``n_categories``
centres (the catalog of the 1M-user synthetic run is 7,101 items), cached first.

Results: benchmarks/results/categories.md, medians and ratios to the 200-partition fit.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from machine import (  # benchmarks/machine.py (scripts run from their folder)
    compute,
    interleaved,
    ratio_table,
    write_report,
)

from genre_spark.config import load_settings
from genre_spark.enrich import fit_categories
from genre_spark.session import build_spark_session

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "categories.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=7_101)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    settings = load_settings([ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml"])
    es = settings.enrich
    spark = build_spark_session(settings.spark)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(es.n_categories, 384))
    vectors = centres[rng.integers(es.n_categories, size=args.items)] + rng.normal(0, 0.6, (args.items, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [(f"i{i}", v.astype(np.float32).tolist()) for i, v in enumerate(vectors)]
    embeddings = spark.createDataFrame(rows, "item_id string, embedding array<float>").cache()
    embeddings.count()

    now = math.ceil(args.items / es.kmeans_rows_per_partition)
    shuffle = settings.spark.shuffle_partitions
    counts = {f"{shuffle} partitions (before)": shuffle, "16 partitions": 16, f"{now} (now)": now}

    def fit(partitions: int) -> None:
        compute(fit_categories(embeddings, es.n_categories, es.seed, partitions))

    times = interleaved({name: lambda n=n: fit(n) for name, n in counts.items()}, args.repeat)
    spark.stop()
    baseline = next(iter(counts))
    write_report(
        RESULTS,
        "Item categories: KMeans time by partition count",
        f"python benchmarks/categories.py --items {args.items} --repeat {args.repeat}",
        "local Spark with conf/local.yaml + conf/scale.yaml; "
        f"{args.items:,} unit vectors of 384 floats around {es.n_categories} centres (cached), "
        f"k = {es.n_categories}, fit + assignment; medians of {args.repeat} interleaved rounds. Before: "
        f"the shuffle partitions of conf/scale.yaml ({shuffle}); 16: those of the earlier scale run; now: "
        f"one per {es.kmeans_rows_per_partition:,} items (`enrich.kmeans_rows_per_partition`).",
        ratio_table(times, baseline, "KMeans on", digits=1),
    )


if __name__ == "__main__":
    main()
