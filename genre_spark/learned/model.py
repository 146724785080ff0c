"""The learned ranker itself: LambdaMART (``rank:ndcg``) with ``xgboost.spark.SparkXGBRanker``.

Training runs in Spark barrier tasks across ``num_workers`` executors (``device: cuda`` on a GPU
cluster); prediction is the model's pandas UDF on the executors. A query is one user at one cut-off.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBRanker, SparkXGBRankerModel

from genre_spark import schemas as S
from genre_spark.config import DiscriminatorSettings

QID = "_qid"
PREDICTION = "_prediction"


def query_id(*keys: str | Column) -> Column:
    """A non-negative int per query (user x cut-off), from a hash: no numbering job, no driver state.
    Two queries sharing a hash would train as one list; at 10M queries that is ~0.2% of them."""
    return F.pmod(F.xxhash64(*keys), F.lit(2**31 - 1)).cast("long")


def booster_params(settings: DiscriminatorSettings) -> dict[str, Any]:
    """The xgboost parameters of the ranker (the same for the Spark estimator and a local XGBRanker)."""
    return {
        "objective": "rank:ndcg",
        "eval_metric": "ndcg@10",
        "lambdarank_pair_method": "topk",
        "lambdarank_num_pair_per_sample": settings.pairs_per_sample,
        "n_estimators": settings.n_estimators,
        "max_depth": settings.max_depth,
        "learning_rate": settings.learning_rate,
        "min_child_weight": settings.min_child_weight,
        "subsample": settings.subsample,
        "colsample_bytree": settings.colsample_bytree,
        "tree_method": "hist",
        "random_state": settings.seed,
    }


def ranker(settings: DiscriminatorSettings, columns: list[str]) -> SparkXGBRanker:
    return SparkXGBRanker(
        features_col=columns,
        label_col=S.LABEL,
        qid_col=QID,
        prediction_col=PREDICTION,
        num_workers=settings.num_workers,
        # the input comes hashed by query into one partition per worker (see fit): kept as it is
        force_repartition=False,
        device=settings.device,
        missing=float("nan"),
        **booster_params(settings),
    )


def fit(training: DataFrame, settings: DiscriminatorSettings, columns: list[str]) -> SparkXGBRankerModel:
    """Fit on ``training`` (user_id, as_of, item_id, label, *columns): one query per user and cut-off.

    The rows are hashed by query into one partition per worker (no query split in two) and sorted by
    query and item. The estimator's own range partitioning samples its bounds with a seed taken from the
    RDD's id, a count of the session's earlier jobs: which queries met on which worker, and so the model,
    changed with whatever the process had run before (two fits of one table in one session scored pairs
    0.68 apart; `benchmarks/ranker_determinism.py`)."""
    data = (
        training.select(query_id(S.USER_ID, S.AS_OF).alias(QID), S.ITEM_ID, S.LABEL, *columns)
        .repartition(settings.num_workers, QID)
        .sortWithinPartitions(QID, S.ITEM_ID)
        .drop(S.ITEM_ID)
    )
    return ranker(settings, columns).fit(data)


def predict(model: SparkXGBRankerModel, features: DataFrame) -> DataFrame:
    """``features`` with ``score``: the model's ranking score (higher first; comparable within a user)."""
    return model.transform(features).withColumnRenamed(PREDICTION, "score")


def importances(model: SparkXGBRankerModel, top: int = 15) -> list[tuple[str, float]]:
    """The ``top`` features by total gain, each as a share of the total."""
    scores = model.get_booster().get_score(importance_type="total_gain")
    gains = {name: float(g) for name, g in scores.items() if isinstance(g, float | int)}
    total = sum(gains.values()) or 1.0
    return sorted(((name, g / total) for name, g in gains.items()), key=lambda p: -p[1])[:top]


def save(model: SparkXGBRankerModel, path: str) -> None:
    model.write().overwrite().save(path)


def load(path: str) -> SparkXGBRankerModel:
    return SparkXGBRankerModel.load(path)
