"""What the later stages read of the ``candidates`` table: each candidate's score relative to its source's
best for the user, and the strategy-independent shortlists the language-model scorers and (when it is
set) the learned ranker see."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S


def normalised_score() -> Column:
    """A candidate's source score over the user's best score from that source: 1.0 for each source's top."""
    best = F.max("source_score").over(Window.partitionBy(S.USER_ID, "source"))
    return F.when(best > 0, F.col("source_score") / best).otherwise(F.lit(0.0))


def shortlist(candidates: DataFrame, n: int) -> DataFrame:
    """(user_id, item_id, shortlist_rank): each user's ``n`` best candidates by the unweighted sum of
    normalised source scores (strategy-independent, so one shortlist serves every strategy)."""
    summed = (
        candidates.withColumn("_norm", normalised_score())
        .groupBy(S.USER_ID, S.ITEM_ID)
        .agg(F.sum("_norm").alias("_sum"))
    )
    return best_per_user(summed, [F.desc("_sum")], n).select(S.USER_ID, S.ITEM_ID, "shortlist_rank")


def best_per_user(pairs: DataFrame, order: list[Column], n: int) -> DataFrame:
    """The rows of ``pairs`` (one per user and item) that are the user's ``n`` first in ``order``, ties by
    item id, with their ``shortlist_rank`` (1 = first)."""
    w = Window.partitionBy(S.USER_ID).orderBy(*order, F.asc(S.ITEM_ID))
    return pairs.withColumn("shortlist_rank", F.row_number().over(w)).filter(F.col("shortlist_rank") <= n)
