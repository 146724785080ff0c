"""What the learned order keeps when the ranker sees only a per-user shortlist, without a refit.

    python benchmarks/shortlist_quality.py --warehouse W --as-of 2011-09-01 --sizes 100 150 200 300

W: the sample's warehouse after `genre-spark evaluate --as-of 2011-09-01` (or `run`) with
``discriminator.shortlist`` null: its ``ranker_scores`` hold the ranker's score of every candidate. Each
case keeps each user's N pairs in one order and lists the 10 best by the stored score: *best source rank*
(:func:`genre_spark.learned.features.shortlisted`, what ``discriminator.shortlist`` keeps) or *source sum*
(:func:`genre_spark.candidate_scores.shortlist`, the LM scorers'). NDCG@10 against the evaluate protocol's
truth (the purchases of the ``--horizon-days`` after), *all* and *new* (never-bought pairs, ``ui_orders``
0). The model was trained on every pair: a refit on the shortlist is ``genre-spark evaluate --set
discriminator.shortlist=N``. Results: benchmarks/results/shortlist_quality.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from functools import reduce
from pathlib import Path

from machine import write_report  # benchmarks/machine.py
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidate_scores import shortlist
from genre_spark.config import load_settings
from genre_spark.evaluation import protocol_truth
from genre_spark.learned.features import shortlisted
from genre_spark.metrics import MODEL, VARIANT, list_metrics, top_k_lists
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "shortlist_quality.md"
EVERY = "every candidate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--horizon-days", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 150, 200, 300])
    args = parser.parse_args()
    settings = load_settings([ROOT / "conf" / "local.yaml"], [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        on = F.col(S.AS_OF) == F.lit(args.as_of)
        keys = [S.USER_ID, S.ITEM_ID]
        features = store.read_table(S.RANKER_FEATURES).filter(on)
        scores = (
            store.read_table(S.RANKER_SCORES).filter(on).select(*keys, F.col(S.LEARNED_SCORE).alias("score"))
        )
        scored = features.join(scores, keys).cache()
        kept: dict[str, DataFrame] = {EVERY: scored}
        for n in args.sizes:
            kept[f"best source rank {n}"] = shortlisted(scored, n)
            by_sum = shortlist(store.read_table(S.CANDIDATES).filter(on), n)
            kept[f"source sum {n}"] = scored.join(by_sum, keys, "left_semi")
        pairs = {name: frame.count() for name, frame in kept.items()}
        frames = [
            frame.select(F.lit(name).alias(MODEL), F.lit(variant).alias(VARIANT), *keys, "score")
            for name, frame in kept.items()
            for variant, frame in [("all", frame), ("new", frame.filter(F.col("ui_orders") == 0))]
        ]
        end = args.as_of + dt.timedelta(days=args.horizon_days)
        truth = protocol_truth(store.read_table(S.EVENTS), store.read_table(S.ITEMS), args.as_of, end)
        lists = top_k_lists(reduce(DataFrame.unionByName, frames), 10)
        ndcg = list_metrics(lists, truth.lists, [10]).filter(F.col("metric") == "ndcg").collect()
        users = scored.select(S.USER_ID).distinct().count()
    finally:
        spark.stop()
    value = {(r[MODEL], r[VARIANT]): r["value"] for r in ndcg}  # one row per model and variant
    every = pairs[EVERY]
    table = ["| pairs kept | pairs | share | NDCG@10 all | NDCG@10 new |", "|---|---:|---:|---:|---:|"]
    table += [
        f"| {name} | {n:,} | {n / every:.0%} | {value[name, 'all']:.4f} | {value[name, 'new']:.4f} |"
        for name, n in pairs.items()
    ]
    command = (
        f"python benchmarks/shortlist_quality.py --warehouse W --as-of {args.as_of} "
        f"--horizon-days {args.horizon_days} --sizes {' '.join(map(str, args.sizes))}"
    )
    setup = (
        f"the stored ranker scores of {every:,} candidate pairs of {users:,} users as of {args.as_of} "
        f"({every / users:.0f} a user), the 10 best of each kept set; no refit."
    )
    write_report(RESULTS, "The learned order on a per-user shortlist", command, setup, table)


if __name__ == "__main__":
    main()
