"""Candidate generation: several sources propose (user, item, score) pairs, each with its own limit.

Every source is a transform over DataFrames (no I/O, no collect) returning
``user_id, item_id, source, source_score, source_rank, detail``; ``detail`` is the evidence a later
explanation quotes ("bought 3 times, last 12 days ago"). Only products, only events before as-of.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark import schemas as S
from genre_spark.config import AlsSettings, CandidateSettings
from genre_spark.storage import TableStore, WriteResult


@dataclass(frozen=True)
class CandidateReport:
    as_of: dt.date
    users: int
    per_source: dict[str, tuple[int, float]]  # source -> (users reached, candidates per reached user)
    write: WriteResult

    def format(self) -> str:
        lines = [f"candidates as of {self.as_of}: {self.users:,} users"]
        lines += [
            f"  {source:<20} {users:>7,} users  {per_user:6.1f} candidates/user"
            for source, (users, per_user) in self.per_source.items()
        ]
        return "\n".join(lines)


def _days_before(as_of: dt.date, ts: str | Column) -> Column:
    return F.datediff(F.lit(as_of), F.to_date(ts))


def _decay(days: Column, half_life: float) -> Column:
    return F.pow(F.lit(0.5), days / F.lit(half_life))


def top_per_user(candidates: DataFrame, source: str, limit: int) -> DataFrame:
    """Keep the ``limit`` best per user (ties broken by item id) and number them."""
    w = Window.partitionBy(S.USER_ID).orderBy(F.desc("source_score"), F.asc(S.ITEM_ID))
    return (
        candidates.withColumn("source_rank", F.row_number().over(w))
        .filter(F.col("source_rank") <= limit)
        .select(
            S.USER_ID,
            S.ITEM_ID,
            F.lit(source).alias("source"),
            F.col("source_score").cast("double"),
            F.col("source_rank").cast("int"),
            F.col("detail").cast("string"),
        )
    )


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
    w = Window.partitionBy(S.USER_ID).orderBy(F.desc("_sum"), F.asc(S.ITEM_ID))
    return (
        summed.withColumn("shortlist_rank", F.row_number().over(w))
        .filter(F.col("shortlist_rank") <= n)
        .select(S.USER_ID, S.ITEM_ID, "shortlist_rank")
    )


def product_purchases(events: DataFrame, items: DataFrame, as_of: dt.date) -> DataFrame:
    """Purchases of products strictly before ``as_of``: user_id, item_id, order_id, event_ts, quantity."""
    products = items.filter(F.col(S.IS_PRODUCT)).select(S.ITEM_ID)
    return (
        events.filter(
            (F.col(S.EVENT_TYPE) == S.PURCHASE)
            & (F.col(S.EVENT_TS) < F.lit(as_of.isoformat()).cast("timestamp"))
        )
        .join(F.broadcast(products), S.ITEM_ID)
        .select(S.USER_ID, S.ITEM_ID, S.ORDER_ID, S.EVENT_TS, S.QUANTITY)
    )


def buy_again(purchases: DataFrame, as_of: dt.date, half_life: float, limit: int) -> DataFrame:
    per_item = purchases.groupBy(S.USER_ID, S.ITEM_ID).agg(
        F.countDistinct(S.ORDER_ID).alias("orders"), F.max(S.EVENT_TS).alias("last")
    )
    days = _days_before(as_of, "last")
    scored = per_item.select(
        S.USER_ID,
        S.ITEM_ID,
        (F.col("orders") * _decay(days, half_life)).alias("source_score"),
        F.when(F.col("orders") == 1, F.format_string("bought once, %d days ago", days))
        .otherwise(F.format_string("bought %d times, last %d days ago", F.col("orders"), days))
        .alias("detail"),
    )
    return top_per_user(scored, "buy_again", limit)


def segment_popularity(
    purchases: DataFrame,
    segments: DataFrame,
    as_of: dt.date,
    window_days: int,
    half_life: float,
    limit: int,
    source: str = "segment_popularity",
    audience: str = "in segment '%s'",
) -> DataFrame:
    """Items most bought lately by the user's segment (decayed buyer counts), proposed to every member.

    ``segments``: user_id, segment_id, segment_label; one segment for everyone gives global popularity.
    ``audience`` names the buyers in the explanation (``%s``: the segment label)."""
    members = segments.select(S.USER_ID, S.SEGMENT_ID, S.SEGMENT_LABEL)
    age = _days_before(as_of, S.EVENT_TS)
    recent = purchases.filter(age <= window_days).join(members, S.USER_ID)
    weighted = recent.groupBy(S.SEGMENT_ID, S.SEGMENT_LABEL, S.ITEM_ID, S.USER_ID).agg(
        F.max(_decay(age, half_life)).alias("w")  # one vote per buyer, worth its latest purchase
    )
    popular = weighted.groupBy(S.SEGMENT_ID, S.SEGMENT_LABEL, S.ITEM_ID).agg(F.sum("w").alias("score"))
    w = Window.partitionBy(S.SEGMENT_ID).orderBy(F.desc("score"), F.asc(S.ITEM_ID))
    top = popular.withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= limit)
    proposed = members.join(F.broadcast(top.drop(S.SEGMENT_LABEL)), S.SEGMENT_ID).select(
        S.USER_ID,
        S.ITEM_ID,
        F.col("score").alias("source_score"),
        F.format_string(
            f"popular {audience} over the last %d days", F.col(S.SEGMENT_LABEL), F.lit(window_days)
        ).alias("detail"),
    )
    return top_per_user(proposed, source, limit)


def global_popularity(
    purchases: DataFrame, users: DataFrame, as_of: dt.date, window_days: int, half_life: float, limit: int
) -> DataFrame:
    """The same popular items (bought by anyone) for each of ``users``: the popularity baseline."""
    everyone = (
        purchases.select(S.USER_ID)
        .unionByName(users.select(S.USER_ID))
        .distinct()
        .select(S.USER_ID, F.lit(0).alias(S.SEGMENT_ID), F.lit("all customers").alias(S.SEGMENT_LABEL))
    )
    popular = segment_popularity(
        purchases, everyone, as_of, window_days, half_life, limit, "popularity", "with %s"
    )
    return popular.join(users.select(S.USER_ID), S.USER_ID, "left_semi")


def cooccurrence_neighbours(
    purchases: DataFrame, max_basket_size: int, min_co_count: int, per_item: int
) -> DataFrame:
    """(item_id, neighbour_id, score): Jaccard of the sets of orders containing each item, top per item.

    Orders with more than ``max_basket_size`` distinct items are left out: a basket of n items makes
    n^2 pairs, so one wholesale order would dominate the join.
    """
    baskets = purchases.select(S.ORDER_ID, S.ITEM_ID).distinct()
    sizes = baskets.groupBy(S.ORDER_ID).count().filter(F.col("count") <= max_basket_size).select(S.ORDER_ID)
    baskets = baskets.join(sizes, S.ORDER_ID)
    item_orders = baskets.groupBy(S.ITEM_ID).agg(F.count("*").alias("n"))
    left = baskets.select(S.ORDER_ID, F.col(S.ITEM_ID).alias("a"))
    right = baskets.select(S.ORDER_ID, F.col(S.ITEM_ID).alias("b"))
    half = (  # each unordered pair once: half the rows to shuffle
        left.join(right, S.ORDER_ID)
        .filter(F.col("a") < F.col("b"))
        .groupBy("a", "b")
        .agg(F.count("*").alias("co"))
        .filter(F.col("co") >= min_co_count)
    )
    pairs = half.unionByName(half.select(F.col("b").alias("a"), F.col("a").alias("b"), "co"))
    na = item_orders.select(F.col(S.ITEM_ID).alias("a"), F.col("n").alias("na"))
    nb = item_orders.select(F.col(S.ITEM_ID).alias("b"), F.col("n").alias("nb"))
    scored = (
        pairs.join(na, "a")
        .join(nb, "b")
        .select(
            F.col("a").alias(S.ITEM_ID),
            F.col("b").alias("neighbour_id"),
            (F.col("co") / (F.col("na") + F.col("nb") - F.col("co"))).alias("score"),
        )
    )
    return _top_neighbours(scored, per_item)


def content_neighbours(embeddings: DataFrame, items: DataFrame, per_item: int) -> DataFrame:
    """(item_id, neighbour_id, score=cosine) within each item category (the blocks).

    Categories come from clustering these same embeddings, so near neighbours share a block and
    the comparisons are sum(n_c^2) instead of n^2. Inside a block a pandas UDF does one matrix
    product (BLAS) and keeps the top ``per_item`` per row: there is no Spark built-in for that.
    """
    blocks = embeddings.join(items.select(S.ITEM_ID, S.CATEGORY_ID), S.ITEM_ID).filter(
        F.col(S.CATEGORY_ID).isNotNull()
    )
    schema = "item_id string, neighbour_id string, score double"

    def one_block(block: pd.DataFrame) -> pd.DataFrame:
        return block_neighbours(block, per_item)

    return (
        blocks.select(S.CATEGORY_ID, S.ITEM_ID, S.EMBEDDING)
        .groupBy(S.CATEGORY_ID)
        .applyInPandas(one_block, schema)
    )


def block_neighbours(block: pd.DataFrame, per_item: int) -> pd.DataFrame:
    """Top cosine neighbours of every item in one block (embeddings are unit length)."""
    ids = block[S.ITEM_ID].to_numpy()
    if len(ids) < 2:
        return pd.DataFrame({"item_id": [], "neighbour_id": [], "score": []})
    vectors = np.stack(block[S.EMBEDDING].to_numpy()).astype(np.float32)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    k = min(per_item, len(ids) - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(ids)), k)
    cols = top.ravel()
    return pd.DataFrame(
        {"item_id": ids[rows], "neighbour_id": ids[cols], "score": sims[rows, cols].astype(float)}
    )


def _top_neighbours(scored: DataFrame, per_item: int) -> DataFrame:
    w = Window.partitionBy(S.ITEM_ID).orderBy(F.desc("score"), F.asc("neighbour_id"))
    return scored.withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= per_item).drop("_r")


def recent_anchors(purchases: DataFrame, n: int) -> DataFrame:
    """(user_id, anchor_id): the user's ``n`` most recently bought distinct items."""
    last = purchases.groupBy(S.USER_ID, S.ITEM_ID).agg(F.max(S.EVENT_TS).alias("last"))
    w = Window.partitionBy(S.USER_ID).orderBy(F.desc("last"), F.asc(S.ITEM_ID))
    return (
        last.withColumn("_r", F.row_number().over(w))
        .filter(F.col("_r") <= n)
        .select(S.USER_ID, F.col(S.ITEM_ID).alias("anchor_id"))
    )


def from_neighbours(
    anchors: DataFrame, neighbours: DataFrame, titles: DataFrame, source: str, template: str, limit: int
) -> DataFrame:
    """Neighbours of the user's anchors, scores summed over anchors; the detail names the strongest anchor."""
    reached = anchors.join(neighbours.withColumnRenamed(S.ITEM_ID, "anchor_id"), "anchor_id")
    per_item = reached.groupBy(S.USER_ID, F.col("neighbour_id").alias(S.ITEM_ID)).agg(
        F.sum("score").alias("source_score"), F.max_by("anchor_id", "score").alias("anchor_id")
    )
    named = per_item.join(
        F.broadcast(titles.select(F.col(S.ITEM_ID).alias("anchor_id"), F.col(S.TITLE).alias("_anchor"))),
        "anchor_id",
        "left",
    )
    return top_per_user(
        named.withColumn("detail", F.format_string(template, F.coalesce("_anchor", "anchor_id"))),
        source,
        limit,
    )


def als_candidates(purchases: DataFrame, users: DataFrame, settings: AlsSettings, limit: int) -> DataFrame:
    """MLlib ALS on implicit feedback (orders per user and item); ids indexed with zipWithIndex."""
    spark = purchases.sparkSession
    user_ids = _index(spark, purchases.select(S.USER_ID).distinct(), S.USER_ID, "_u")
    item_ids = _index(spark, purchases.select(S.ITEM_ID).distinct(), S.ITEM_ID, "_i")
    ratings = (
        purchases.groupBy(S.USER_ID, S.ITEM_ID)
        .agg(F.countDistinct(S.ORDER_ID).cast("float").alias("_r"))
        .join(user_ids, S.USER_ID)
        .join(item_ids, S.ITEM_ID)
    )
    model = ALS(
        rank=settings.rank,
        maxIter=settings.max_iter,
        regParam=settings.reg_param,
        alpha=settings.alpha,
        implicitPrefs=True,
        userCol="_u",
        itemCol="_i",
        ratingCol="_r",
        coldStartStrategy="drop",
        numUserBlocks=settings.num_blocks,
        numItemBlocks=settings.num_blocks,
        seed=settings.seed,
    ).fit(ratings)
    subset = users.select(S.USER_ID).join(user_ids, S.USER_ID).select("_u")
    recs = model.recommendForUserSubset(subset, limit).select("_u", F.explode("recommendations").alias("r"))
    proposed = (
        recs.select("_u", F.col("r._i").alias("_i"), F.col("r.rating").alias("source_score"))
        .join(user_ids, "_u")
        .join(item_ids, "_i")
        .withColumn("detail", F.lit("customers with similar baskets bought it"))
    )
    return top_per_user(proposed, "als", limit)


def _index(spark: SparkSession, ids: DataFrame, column: str, index: str) -> DataFrame:
    """Dense int ids for MLlib, assigned in parallel (zipWithIndex), not collected to the driver.

    Checkpointed (eagerly, in the executors): the row order after ``distinct`` is not deterministic, so
    a recomputation could number the ids differently between the ratings and the recommendations.
    """
    schema = T.StructType([T.StructField(column, T.StringType()), T.StructField(index, T.IntegerType())])
    rdd = ids.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1])))
    return spark.createDataFrame(rdd, schema).localCheckpoint(eager=True)


def generate_candidates(
    spark: SparkSession,
    purchases: DataFrame,
    items: DataFrame,
    segments: DataFrame,
    embeddings: DataFrame,
    settings: CandidateSettings,
    as_of: dt.date,
) -> DataFrame:
    """All sources for the users in ``segments`` (one as-of date), unioned.

    ``purchases``: :func:`product_purchases` as of ``as_of``; every source reads it, so callers persist it.
    """
    users = segments.select(S.USER_ID)
    purchases_of_users = purchases.join(users, S.USER_ID, "left_semi")
    limits = settings.limits
    titles = items.select(S.ITEM_ID, S.TITLE)
    frames: list[DataFrame] = []
    if limits.get("buy_again", 0):
        frames.append(
            buy_again(purchases_of_users, as_of, settings.recency_half_life_days, limits["buy_again"])
        )
    if limits.get("popularity", 0):
        frames.append(
            global_popularity(
                purchases,
                users,
                as_of,
                settings.popularity_window_days,
                settings.popularity_half_life_days,
                limits["popularity"],
            )
        )
    if limits.get("segment_popularity", 0):
        frames.append(
            segment_popularity(
                purchases,
                segments,
                as_of,
                settings.popularity_window_days,
                settings.popularity_half_life_days,
                limits["segment_popularity"],
            )
        )
    anchors = recent_anchors(purchases_of_users, settings.anchor_items)
    if limits.get("co_occurrence", 0):
        neighbours = cooccurrence_neighbours(
            purchases, settings.max_basket_size, settings.min_co_count, settings.neighbours_per_item
        )
        frames.append(
            from_neighbours(
                anchors, neighbours, titles, "co_occurrence", "often bought with %s", limits["co_occurrence"]
            )
        )
    if limits.get("als", 0):
        frames.append(als_candidates(purchases, users, settings.als, limits["als"]))
    if limits.get("content", 0):
        products = items.filter(F.col(S.IS_PRODUCT))
        neighbours = content_neighbours(embeddings, products, settings.neighbours_per_item)
        frames.append(
            from_neighbours(anchors, neighbours, titles, "content", "similar to %s", limits["content"])
        )
    if not frames:
        raise ValueError("candidates.limits turns every source off")
    return functools.reduce(DataFrame.unionByName, frames).withColumn(S.AS_OF, F.lit(as_of).cast("date"))


def run_candidates(
    spark: SparkSession, store: TableStore, settings: CandidateSettings, as_of: dt.date, run_id: str
) -> CandidateReport:
    segments = store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(as_of))
    items = store.read_table(S.ITEMS)
    # read by all six sources: one scan of the events instead of one per source
    purchases = product_purchases(store.read_table(S.EVENTS), items, as_of).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        candidates = generate_candidates(
            spark, purchases, items, segments, store.read_table(S.ITEM_EMBEDDINGS), settings, as_of
        )
        write = store.replace_date(candidates, S.CANDIDATES, as_of=as_of, run_id=run_id, stage="candidates")
    finally:
        purchases.unpersist()
    written = store.read_table(S.CANDIDATES).filter(F.col(S.AS_OF) == F.lit(as_of))
    per_source = {
        r["source"]: (int(r["users"]), float(r["rows"]) / max(int(r["users"]), 1))
        for r in written.groupBy("source")
        .agg(F.countDistinct(S.USER_ID).alias("users"), F.count("*").alias("rows"))
        .orderBy("source")
        .collect()  # one row per source
    }
    users = written.select(S.USER_ID).distinct().count()
    return CandidateReport(as_of, users, per_source, write)
