"""Two steps of the discriminator stage against what they replaced, in one run: scoring both models in one
pass, and a training cut-off's user-side features over its sample's purchases only.

    python benchmarks/ranker_steps.py --work DIR

DIR: what `benchmarks/ranker.py --work DIR` leaves (its warehouse with the ranker's features, both saved
models and the cut-off's candidates, made for its training sample; its generated source config). Interleaved
over ``--repeat`` rounds, into Spark's noop sink:

- scoring as of T (every candidate pair): *two scorings and a join* (reference: the ranker over every pair,
  the new-items model over the never-bought ones, joined back by pair) against *one pass* (the second model
  predicts on the rows the first scored: :func:`genre_spark.learned.stage.score_pairs`);
- the labelled cut-off's features (:func:`genre_spark.learned.features.pair_features`): the user-side
  aggregations over *every user's purchases* (reference) against *the sample's* (``sampled=True``).

Each pair must give the same rows (scores within 1e-6, features within 1e-9, relative), or the script fails.
Results: benchmarks/results/ranker_steps.md, medians and ratios to each reference.
"""

from __future__ import annotations

import argparse
import operator
from collections.abc import Callable
from functools import reduce
from pathlib import Path

from machine import (  # benchmarks/machine.py
    compute,
    first_strategy_indices,
    interleaved,
    ratio_table,
    write_report,
)
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBRankerModel

from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.history import History
from genre_spark.learned import model as M
from genre_spark.learned.features import pair_features
from genre_spark.learned.stage import (
    MODEL_KIND,
    NEW_ITEMS_KIND,
    ModelNote,
    score_pairs,
)
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "ranker_steps.md"


def noop(frame: Callable[[], DataFrame]) -> Callable[[], None]:
    return lambda: compute(frame())


def two_scorings(features: DataFrame, ranker: SparkXGBRankerModel, new: SparkXGBRankerModel) -> DataFrame:
    """The previous scoring (reference): each model its own transform, the second joined back by pair."""
    scored = M.predict(ranker, features)
    never_bought = M.predict(new, features.filter(F.col("ui_orders") == 0))
    new_scores = never_bought.select(S.USER_ID, S.ITEM_ID, F.col("score").alias(S.LEARNED_NEW_SCORE))
    return scored.join(new_scores, [S.USER_ID, S.ITEM_ID], "left").select(
        S.USER_ID, S.ITEM_ID, F.col("score").alias(S.LEARNED_SCORE), S.LEARNED_NEW_SCORE
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="benchmarks/ranker.py's --work")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    conf = [
        ROOT / "conf" / "local.yaml",
        ROOT / "conf" / "scale.yaml",
        args.work / "data" / "genre-spark.yaml",
    ]
    settings = load_settings(conf, [f"storage.warehouse={args.work / 'warehouse'}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        latest = store.latest_model(MODEL_KIND)
        note = ModelNote.from_json(store.read_model_note(MODEL_KIND, latest) or "")
        ranker = M.load(store.model_path(MODEL_KIND, note.run_id))
        new = M.load(store.model_path(NEW_ITEMS_KIND, note.run_id))
        on = {day: F.col(S.AS_OF) == F.lit(day) for day in [note.as_of, note.cutoffs[0]]}
        at_t = store.read_table(S.RANKER_FEATURES).filter(on[note.as_of])

        def one_pass() -> DataFrame:
            return score_pairs(at_t, ranker, new).select(
                S.USER_ID, S.ITEM_ID, S.LEARNED_SCORE, S.LEARNED_NEW_SCORE
            )

        cutoff = note.cutoffs[0]
        history = History.read(store, cutoff)
        purchases = history.purchases().persist(StorageLevel.MEMORY_AND_DISK)
        segments = store.read_table(S.USER_SEGMENTS).filter(on[cutoff])
        indices = first_strategy_indices(segments, settings)
        candidates = store.read_table(S.CANDIDATES).filter(on[cutoff])

        def cutoff_features(sampled: bool) -> DataFrame:
            return pair_features(
                candidates, purchases, indices, None, cutoff, settings.discriminator.label_days, sampled
            )

        check_same(two_scorings(at_t, ranker, new), one_pass(), tolerance=1e-6)
        check_same(cutoff_features(False), cutoff_features(True), tolerance=1e-9)  # sums in another order
        scoring = {
            "two scorings and a join (reference)": noop(lambda: two_scorings(at_t, ranker, new)),
            "one pass": noop(one_pass),
        }
        features = {
            "every user's purchases (reference)": noop(lambda: cutoff_features(False)),
            "the sample's purchases": noop(lambda: cutoff_features(True)),
        }
        times = interleaved({**scoring, **features}, args.repeat)
        pairs, sample = at_t.count(), candidates.select(S.USER_ID).distinct().count()
        cut_pairs = candidates.select(S.USER_ID, S.ITEM_ID).distinct().count()
        users = segments.count()
    finally:
        spark.stop()
    setup = (
        f"scoring: {pairs:,} candidate pairs as of {note.as_of}; the cut-off {cutoff}: {cut_pairs:,} pairs "
        f"for its sample of {sample:,} of {users:,} segmented users; {args.repeat} interleaved rounds."
    )
    command = f"python benchmarks/ranker_steps.py --work DIR --repeat {args.repeat}"
    table = [
        *ratio_table(
            {k: times[k] for k in scoring}, "two scorings and a join (reference)", "scoring as of T"
        ),
        "",
        *ratio_table(
            {k: times[k] for k in features}, "every user's purchases (reference)", "cut-off features"
        ),
    ]
    write_report(RESULTS, "Two discriminator steps against what they replaced", command, setup, table)


def check_same(reference: DataFrame, current: DataFrame, tolerance: float) -> None:
    """The same (user, item) pairs; every other column equal within ``tolerance`` relative (nulls alike)."""
    values = [c for c in reference.columns if c not in (S.USER_ID, S.ITEM_ID)]
    keys = [S.USER_ID, S.ITEM_ID]
    both = (
        reference.withColumn("_r", F.lit(True))
        .alias("r")
        .join(current.withColumn("_c", F.lit(True)).alias("c"), keys, "full_outer")
    )
    same = [
        (F.col(f"r.{c}").isNull() & F.col(f"c.{c}").isNull())
        | (F.abs(F.col(f"r.{c}") - F.col(f"c.{c}")) <= tolerance * F.greatest(F.abs(f"r.{c}"), F.lit(1.0)))
        for c in values
    ]
    all_same = reduce(operator.and_, [F.col("_r").isNotNull() & F.col("_c").isNotNull(), *same])
    bad = both.filter(~F.coalesce(all_same, F.lit(False))).count()
    if bad:
        raise SystemExit(f"{bad} pairs differ between the reference and the current step")


if __name__ == "__main__":
    main()
