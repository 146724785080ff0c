"""Candidate generation: several sources propose (user, item, score) pairs, each with its own limit.

Every source is a transform over DataFrames (no table I/O) returning
``user_id, item_id, source, source_score, source_rank, detail``; ``detail`` is the evidence a later
explanation quotes ("bought 3 times, last 12 days ago"). Only products, only events before as-of.

Some run Spark jobs while their plan is built, none brings per-user data to the driver: ALS fits its
model (for a training sample, it counts the sample and checkpoints whom it fits on,
:func:`als_fit_users`), the dense ids MLlib, the co-occurrence pairs and the similar-users sums need are
numbered and checkpointed (so that a recomputation cannot number them differently, :func:`_index`), and
the co-occurrence cap collects one row per day of history (:func:`recent_orders`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark import schemas as S
from genre_spark.config import AlsSettings, CandidateSettings, SimilarUserSettings
from genre_spark.errors import ConfigError
from genre_spark.history import YEAR_DAYS, History, days_before, decay, midnight, purchase_history
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


def top_per_user(scored: DataFrame, limit: int) -> DataFrame:
    """The ``limit`` best rows per user by source_score (ties broken by item id), numbered in
    source_rank. Callers spell their detail afterwards, for the rows kept: the sort then carries
    numbers, not a string per scored pair."""
    w = Window.partitionBy(S.USER_ID).orderBy(F.desc("source_score"), F.asc(S.ITEM_ID))
    return scored.withColumn("source_rank", F.row_number().over(w)).filter(F.col("source_rank") <= limit)


def _as_candidates(ranked: DataFrame, source: str, detail: Column) -> DataFrame:
    return ranked.select(
        S.USER_ID,
        S.ITEM_ID,
        F.lit(source).alias("source"),
        F.col("source_score").cast("double"),
        F.col("source_rank").cast("int"),
        detail.cast("string").alias("detail"),
    )


def buy_again(history: DataFrame, as_of: dt.date, half_life: float, limit: int) -> DataFrame:
    """``history``: :func:`purchase_history`."""
    days = days_before(as_of, "last")
    scored = history.select(
        S.USER_ID,
        S.ITEM_ID,
        "orders",
        "last",
        (F.col("orders") * decay(days, half_life)).alias("source_score"),
    )
    detail = F.when(F.col("orders") == 1, F.format_string("bought once, %d days ago", days)).otherwise(
        F.format_string("bought %d times, last %d days ago", F.col("orders"), days)
    )
    return _as_candidates(top_per_user(scored, limit), "buy_again", detail)


def segment_popularity(
    purchases: DataFrame,
    segments: DataFrame,
    as_of: dt.date,
    window_days: int,
    half_life: float,
    limit: int,
) -> DataFrame:
    """Items most bought lately by the user's segment (decayed buyer counts), proposed to every member.

    ``segments``: user_id, segment_id, segment_label."""
    members = segments.select(S.USER_ID, S.SEGMENT_ID, S.SEGMENT_LABEL)
    top = _popular(purchases.join(members, S.USER_ID), as_of, window_days, half_life, limit)
    detail = F.format_string(
        "popular in segment '%s' over the last %d days", F.col(S.SEGMENT_LABEL), F.lit(window_days)
    )
    return _propose(members, top, detail, "segment_popularity")


def global_popularity(
    purchases: DataFrame, users: DataFrame, as_of: dt.date, window_days: int, half_life: float, limit: int
) -> DataFrame:
    """The same popular items (bought by anyone) for each of ``users``: the popularity baseline."""
    everyone = purchases.withColumns({S.SEGMENT_ID: F.lit(0), S.SEGMENT_LABEL: F.lit("all customers")})
    top = _popular(everyone, as_of, window_days, half_life, limit)
    members = users.select(S.USER_ID, F.lit(0).alias(S.SEGMENT_ID))
    detail = F.lit(f"popular with all customers over the last {window_days} days")
    return _propose(members, top, detail, "popularity")


def seasonal_popularity(
    purchases: DataFrame, users: DataFrame, as_of: dt.date, window_days: int, limit: int
) -> DataFrame:
    """The items most customers bought in the ``window_days`` after the date a year (52 weeks) earlier,
    for each of ``users``: what the coming weeks sold last year (a retailer's Christmas starts in autumn)."""
    start = as_of - dt.timedelta(days=YEAR_DAYS)
    end = start + dt.timedelta(days=window_days)
    ts = F.col(S.EVENT_TS)
    window = purchases.filter((ts >= midnight(start)) & (ts < midnight(end)))
    everyone = window.withColumns({S.SEGMENT_ID: F.lit(0), S.SEGMENT_LABEL: F.lit("all customers")})
    top = _popular(everyone, end, window_days, None, limit)
    members = users.select(S.USER_ID, F.lit(0).alias(S.SEGMENT_ID))
    detail = F.lit(f"popular in the same weeks last year ({start} to {end - dt.timedelta(days=1)})")
    return _propose(members, top, detail, "seasonal")


def _popular(
    purchases: DataFrame, as_of: dt.date, window_days: int, half_life: float | None, limit: int
) -> DataFrame:
    """(segment_id, segment_label, item_id, source_score, source_rank): the ``limit`` items per segment
    with the most buyers in the ``window_days`` before ``as_of``, each buyer's vote worth its latest
    purchase's decay (one each without a ``half_life``)."""
    age = days_before(as_of, S.EVENT_TS)
    vote = decay(age, half_life) if half_life is not None else F.lit(1.0)
    weighted = (
        purchases.filter(age <= window_days)
        .groupBy(S.SEGMENT_ID, S.SEGMENT_LABEL, S.ITEM_ID, S.USER_ID)
        .agg(F.max(vote).alias("w"))  # one vote per buyer
    )
    popular = weighted.groupBy(S.SEGMENT_ID, S.SEGMENT_LABEL, S.ITEM_ID).agg(F.sum("w").alias("source_score"))
    # the top of each segment's list, best score first, ties by item id: a sorted array per segment
    # rather than a window, which Spark warns about for the one "all customers" segment (a literal key)
    entry = F.struct((-F.col("source_score")).alias("neg"), F.col(S.ITEM_ID).alias("item"))
    tops = popular.groupBy(S.SEGMENT_ID, S.SEGMENT_LABEL).agg(
        F.slice(F.array_sort(F.collect_list(entry)), 1, limit).alias("top")
    )
    return tops.select(S.SEGMENT_ID, S.SEGMENT_LABEL, F.posexplode("top").alias("pos", "t")).select(
        S.SEGMENT_ID,
        S.SEGMENT_LABEL,
        F.col("t.item").alias(S.ITEM_ID),
        (-F.col("t.neg")).alias("source_score"),
        (F.col("pos") + 1).alias("source_rank"),
    )


def _propose(members: DataFrame, top: DataFrame, detail: Column, source: str) -> DataFrame:
    """Each member gets their segment's list as ranked there (the same order :func:`top_per_user`
    gives, without sorting every user's rows again): a broadcast join of a list per segment."""
    served = members.select(S.USER_ID, S.SEGMENT_ID).join(F.broadcast(top), S.SEGMENT_ID)
    return _as_candidates(served, source, detail)


def cooccurrence_neighbours(
    purchases: DataFrame,
    max_basket_size: int,
    min_co_count: int,
    per_item: int,
    max_orders: int | None = None,
) -> DataFrame:
    """(item_id, neighbour_id, score): Jaccard of the sets of orders containing each item, top per item.

    Orders with more than ``max_basket_size`` distinct items are left out: a basket of n items makes
    n^2 pairs, so one wholesale order would dominate. With ``max_orders``, only the most recent orders
    count (whole days, newest first, see :func:`recent_orders`): pairs grow with the orders while the
    item-item similarity they estimate does not, so the cost stops growing with the users.

    Items are numbered, each order becomes a sorted array of item numbers and each pair one 64-bit key,
    counted by one hash aggregation: no self-join of the orders and no grouping by two strings.
    """
    spark = purchases.sparkSession
    lines = purchases.select(S.ORDER_ID, S.ITEM_ID, S.EVENT_TS)
    if max_orders is not None:
        lines = recent_orders(lines, max_orders)
    ids = _index(spark, lines.select(S.ITEM_ID).distinct(), S.ITEM_ID, "_i")
    baskets = (
        lines.join(F.broadcast(ids), S.ITEM_ID)
        .groupBy(S.ORDER_ID)
        .agg(F.array_sort(F.collect_set("_i")).alias("_b"))
        .filter(F.size("_b") <= max_basket_size)
        .select("_b")
        .localCheckpoint(eager=False)  # read twice (order counts, pairs): baskets are grouped once
    )
    item_orders = baskets.select(F.explode("_b").alias("_i")).groupBy("_i").agg(F.count("*").alias("n"))
    half = (  # each unordered pair (a < b) once, as a * 2^32 + b
        baskets.select(F.explode(_pair_keys(F.col("_b"))).alias("_p"))
        .groupBy("_p")
        .agg(F.count("*").alias("co"))
        .filter(F.col("co") >= min_co_count)
        .select(
            F.shiftright("_p", 32).cast("int").alias("a"),
            F.col("_p").bitwiseAND(F.lit(0xFFFFFFFF)).cast("int").alias("b"),
            "co",
        )
    )
    pairs = half.unionByName(half.select(F.col("b").alias("a"), F.col("a").alias("b"), "co"))
    na = F.broadcast(item_orders.select(F.col("_i").alias("a"), F.col("n").alias("na")))
    nb = F.broadcast(item_orders.select(F.col("_i").alias("b"), F.col("n").alias("nb")))
    names_a = F.broadcast(ids.select(F.col("_i").alias("a"), F.col(S.ITEM_ID)))
    names_b = F.broadcast(ids.select(F.col("_i").alias("b"), F.col(S.ITEM_ID).alias("neighbour_id")))
    scored = (
        pairs.join(na, "a")
        .join(nb, "b")
        .join(names_a, "a")
        .join(names_b, "b")
        .select(
            S.ITEM_ID,
            "neighbour_id",
            (F.col("co") / (F.col("na") + F.col("nb") - F.col("co"))).alias("score"),
        )
    )
    return _top_neighbours(scored, per_item)


def _pair_keys(basket: Column) -> Column:
    """Every pair (a, b), a < b, of a sorted array of distinct non-negative ints, as a * 2^32 + b."""
    n = F.size(basket)
    return F.flatten(
        F.transform(
            basket,
            lambda a, i: F.transform(
                F.slice(basket, i + 2, n), lambda b: F.shiftleft(a.cast("long"), 32) + b.cast("long")
            ),
        )
    )


def recent_orders(lines: DataFrame, max_orders: int) -> DataFrame:
    """The lines of the most recent orders: whole days, newest first, as many as keep the number of
    orders within ``max_orders`` (at least the newest day). ``lines`` needs order_id and event_ts."""
    day = F.to_date(S.EVENT_TS)
    per_day = lines.groupBy(day.alias("day")).agg(F.countDistinct(S.ORDER_ID).alias("orders"))
    total, first = 0, None
    for row in per_day.orderBy(F.desc("day")).collect():  # one row per day of history
        if first is not None and total + row["orders"] > max_orders:
            return lines.filter(day >= F.lit(first))
        total, first = total + row["orders"], row["day"]
    return lines


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


NEIGHBOUR_ROWS = 2048  # items compared with their whole block at once: memory rows x block, not block^2


def block_neighbours(block: pd.DataFrame, per_item: int, rows_at_once: int = NEIGHBOUR_ROWS) -> pd.DataFrame:
    """Top cosine neighbours of every item in one block (embeddings are unit length), ``rows_at_once``
    items against the block per matrix product: a category of 20,000 items needs 160 MB, not 1.6 GB."""
    ids = block[S.ITEM_ID].to_numpy()
    if len(ids) < 2:
        return pd.DataFrame({S.ITEM_ID: [], "neighbour_id": [], "score": []})
    vectors = np.stack(block[S.EMBEDDING].to_numpy()).astype(np.float32)
    k = min(per_item, len(ids) - 1)
    rows, cols, scores = [], [], []
    for start in range(0, len(ids), rows_at_once):
        sims = vectors[start : start + rows_at_once] @ vectors.T
        own = np.arange(len(sims))
        sims[own, start + own] = -np.inf  # an item is not its own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(start + own, k))
        cols.append(top.ravel())
        scores.append(np.take_along_axis(sims, top, axis=1).ravel())
    r, c = np.concatenate(rows), np.concatenate(cols)
    return pd.DataFrame(
        {S.ITEM_ID: ids[r], "neighbour_id": ids[c], "score": np.concatenate(scores).astype(float)}
    )


def _top_neighbours(scored: DataFrame, per_item: int) -> DataFrame:
    w = Window.partitionBy(S.ITEM_ID).orderBy(F.desc("score"), F.asc("neighbour_id"))
    return scored.withColumn("_r", F.row_number().over(w)).filter(F.col("_r") <= per_item).drop("_r")


def recent_anchors(history: DataFrame, n: int) -> DataFrame:
    """(user_id, anchor_id): the user's ``n`` most recently bought distinct items (``history``:
    :func:`purchase_history`)."""
    w = Window.partitionBy(S.USER_ID).orderBy(F.desc("last"), F.asc(S.ITEM_ID))
    return (
        history.withColumn("_r", F.row_number().over(w))
        .filter(F.col("_r") <= n)
        .select(S.USER_ID, F.col(S.ITEM_ID).alias("anchor_id"))
    )


def from_neighbours(
    anchors: DataFrame, neighbours: DataFrame, titles: DataFrame, source: str, template: str, limit: int
) -> DataFrame:
    """Neighbours of the user's anchors, scores summed over anchors; the detail names the strongest anchor."""
    reached = anchors.join(neighbours.withColumnRenamed(S.ITEM_ID, "anchor_id"), "anchor_id")
    per_item = reached.groupBy(S.USER_ID, F.col("neighbour_id").alias(S.ITEM_ID)).agg(
        F.sum("score").alias("source_score"),
        F.max_by("anchor_id", F.struct("score", "anchor_id")).alias("anchor_id"),  # ties: by id
    )
    named = top_per_user(per_item, limit).join(
        F.broadcast(titles.select(F.col(S.ITEM_ID).alias("anchor_id"), F.col(S.TITLE).alias("_anchor"))),
        "anchor_id",
        "left",
    )
    return _as_candidates(named, source, F.format_string(template, F.coalesce("_anchor", "anchor_id")))


FIT_SALT = "als_fit"  # the fit sample's hash salt (:func:`als_fit_users`)


def als_fit_users(history: DataFrame, users: DataFrame, max_users: int, seed: int) -> DataFrame:
    """(user_id): whose ``history`` ALS fits on, ``max_users`` of them: every user it proposes for
    (``users``: their factors are needed), then the others with the smallest seeded hashes of the user id
    (all of ``users`` when they alone are more). Counts ``users`` and checkpoints the result: ALS reads
    it three times (the id numberings and the ratings)."""
    everyone = history.select(S.USER_ID).distinct()
    targets = everyone.join(users.select(S.USER_ID), S.USER_ID, "left_semi")
    room = max(max_users - targets.count(), 0)
    others = (
        everyone.join(targets, S.USER_ID, "left_anti")
        # salted: a training sample is the label buyers of smallest (user, seed) hashes, whose order must
        # not pick the others (it would pick mostly the non-buyers below the sample's largest hash)
        .orderBy(F.xxhash64(S.USER_ID, F.lit(seed), F.lit(FIT_SALT)), S.USER_ID)
        .limit(room)
    )
    return targets.unionByName(others).localCheckpoint(eager=True)


def als_candidates(
    history: DataFrame, users: DataFrame, settings: AlsSettings, limit: int, max_fit_users: int | None = None
) -> DataFrame:
    """MLlib ALS on implicit feedback (``history``'s orders per user and item, see
    :func:`purchase_history`; with ``max_fit_users``, the histories of :func:`als_fit_users` only); ids
    indexed with zipWithIndex."""
    spark = history.sparkSession
    if max_fit_users is not None:
        fit = als_fit_users(history, users, max_fit_users, settings.seed)
        history = history.join(fit, S.USER_ID, "left_semi")
    user_ids = _index(spark, history.select(S.USER_ID).distinct(), S.USER_ID, "_u")
    item_ids = _index(spark, history.select(S.ITEM_ID).distinct(), S.ITEM_ID, "_i")
    ratings = (
        history.select(S.USER_ID, S.ITEM_ID, F.col("orders").cast("float").alias("_r"))
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
    )
    return _as_candidates(
        top_per_user(proposed, limit), "als", F.lit("customers with similar baskets bought it")
    )


def similar_users(
    purchases: DataFrame, users: DataFrame, as_of: dt.date, settings: SimilarUserSettings, limit: int
) -> DataFrame:
    """User-based CF in the manner of TIFU-KNN (Hu et al., SIGIR 2020): each user is a vector of
    recency-decayed order counts per item (L2-normalised); a user's nearest ``neighbours`` users by cosine
    propose their items, scored by the similarity-weighted mean of their vectors.

    Cosines are summed over shared items from one item-side join of each unordered pair of buyers once,
    on 64-bit hashes of the user ids; each item contributes its ``max_buyers_per_item`` heaviest buyers
    (the pairs an item adds grow with the square of its buyers; a buyer for whom the item weighs little
    adds little to any cosine). With ``items_per_neighbour``, a neighbour proposes only its heaviest
    items: the rows scored are users x neighbours x items per neighbour, the stage's largest aggregation.
    Ties break by the hashed user id and the item id.
    """
    # items as dense ints in id order: the largest aggregation below groups (long, int), not (long, string)
    ids = _index(purchases.sparkSession, purchases.select(S.ITEM_ID).distinct(), S.ITEM_ID, "_i")
    vectors = (
        _decayed_user_vectors(purchases, as_of, settings.half_life_days)
        .join(F.broadcast(ids), S.ITEM_ID)
        .select("_u", "_i", "w")
    )
    cosine = _user_cosines(vectors, settings.max_buyers_per_item)
    targets = users.select(S.USER_ID, F.xxhash64(S.USER_ID).alias("_u"))
    nearest = F.array_sort(F.collect_list(F.struct((-F.col("_sim")).alias("neg"), "_v", "_sim")))
    neighbours = (
        cosine.join(targets.select("_u"), "_u", "left_semi")
        .groupBy("_u")
        .agg(F.slice(nearest, 1, settings.neighbours).alias("_n"))
        .select(  # the sum of the similarities here, not in a second aggregation (which recomputes them)
            "_u",
            F.aggregate("_n._sim", F.lit(0.0), lambda total, sim: total + sim).alias("_total"),
            F.size("_n").alias("_k"),
            F.explode("_n").alias("_n"),
        )
        .select("_u", "_total", "_k", F.col("_n._v").alias("_v"), F.col("_n._sim").alias("_sim"))
    )
    theirs = vectors.select(F.col("_u").alias("_v"), "_i", "w")
    if settings.items_per_neighbour is not None:
        heaviest_first = Window.partitionBy("_v").orderBy(F.desc("w"), "_i")
        theirs = (
            theirs.withColumn("_r", F.row_number().over(heaviest_first))
            .filter(F.col("_r") <= settings.items_per_neighbour)
            .drop("_r")
        )
    summed = (
        neighbours.join(theirs, "_v")
        .groupBy("_u", "_i")
        .agg(
            F.sum(F.col("_sim") * F.col("w")).alias("_s"),
            F.count("*").alias("_buyers"),
            F.max("_total").alias("_total"),  # one value per user: carried, not a grouping key
            F.max("_k").alias("_k"),
        )
        .withColumn("source_score", F.col("_s") / F.col("_total"))
    )
    # ranked by the hashed user (the ids' order is the items' order, so ties break by item id as in
    # top_per_user), then named: only the kept rows meet the user and item ids
    best_first = Window.partitionBy("_u").orderBy(F.desc("source_score"), "_i")
    ranked = summed.withColumn("source_rank", F.row_number().over(best_first)).filter(
        F.col("source_rank") <= limit
    )
    named = ranked.join(targets, "_u").join(F.broadcast(ids), "_i")
    detail = F.format_string(
        "bought by %d of the %d customers with the most similar baskets", "_buyers", "_k"
    )
    return _as_candidates(named, "similar_users", detail)


def _decayed_user_vectors(purchases: DataFrame, as_of: dt.date, half_life_days: float) -> DataFrame:
    """(user_id, _u: its 64-bit hash, item_id, w): recency-decayed order counts, L2-normalised per user."""
    per_order = purchases.groupBy(S.USER_ID, S.ITEM_ID, S.ORDER_ID).agg(
        F.min(days_before(as_of, S.EVENT_TS)).alias("_age")
    )
    weights = per_order.groupBy(S.USER_ID, S.ITEM_ID).agg(
        F.sum(decay(F.col("_age"), half_life_days)).alias("_w")
    )
    norms = weights.groupBy(S.USER_ID).agg(F.sqrt(F.sum(F.col("_w") * F.col("_w"))).alias("_n"))
    return weights.join(norms, S.USER_ID).select(
        S.USER_ID, F.xxhash64(S.USER_ID).alias("_u"), S.ITEM_ID, (F.col("_w") / F.col("_n")).alias("w")
    )


def _user_cosines(vectors: DataFrame, max_buyers_per_item: int) -> DataFrame:
    """(_u, _v, _sim) both ways: cosines summed over shared items (``vectors``: _u, _i, w), each item's
    heaviest buyers only."""
    heaviest = F.array_sort(F.collect_list(F.struct((-F.col("w")).alias("neg"), "_u", "w")))
    buyers = (
        vectors.groupBy("_i")
        .agg(F.slice(heaviest, 1, max_buyers_per_item).alias("_b"))
        .select("_i", F.explode("_b").alias("_b"))
        .select("_i", F.col("_b._u").alias("_u"), F.col("_b.w").alias("_wu"))
    )
    others = buyers.select("_i", F.col("_u").alias("_v"), F.col("_wu").alias("_wv"))
    half = (  # each unordered pair once (u < v), then both directions (one explode: no second join)
        buyers.join(others, "_i")
        .filter(F.col("_u") < F.col("_v"))
        .groupBy("_u", "_v")
        .agg(F.sum(F.col("_wu") * F.col("_wv")).alias("_sim"))
    )
    both = F.array(
        F.struct("_u", "_v", "_sim"), F.struct(F.col("_v").alias("_u"), F.col("_u").alias("_v"), "_sim")
    )
    return half.select(F.explode(both).alias("_p")).select("_p.*")


def _index(spark: SparkSession, ids: DataFrame, column: str, index: str) -> DataFrame:
    """Dense int ids for MLlib in id order (a sort, then zipWithIndex), not collected to the driver: the
    same ids get the same numbers in every run. Checkpointed (eagerly, in the executors), so the ratings
    and the recommendations read one numbering.
    """
    schema = T.StructType([T.StructField(column, T.StringType()), T.StructField(index, T.IntegerType())])
    rdd = ids.orderBy(column).rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1])))
    return spark.createDataFrame(rdd, schema).localCheckpoint(eager=True)


@dataclass(frozen=True)
class SourceInputs:
    """What the sources read for one as-of date (lazy frames; the callers persist the shared ones)."""

    purchases: DataFrame  # product purchases before as_of
    history: DataFrame  # purchase_history of all users (ALS fits on everyone's but with a capped fit)
    segments: DataFrame  # every user with a segment (segment popularity counts their votes)
    items: DataFrame  # the catalog as of the date
    embeddings: DataFrame | None
    settings: CandidateSettings
    as_of: dt.date
    targets: DataFrame | None = None  # user_id: propose only for these (a training sample); None: everyone

    @property
    def users(self) -> DataFrame:
        """The users to propose for: those of ``segments``, among ``targets`` when given."""
        users = self.segments.select(S.USER_ID)
        return users if self.targets is None else users.join(self.targets, S.USER_ID, "left_semi")

    @property
    def history_of_users(self) -> DataFrame:
        return self.history.join(self.users, S.USER_ID, "left_semi")

    @property
    def anchors(self) -> DataFrame:
        return recent_anchors(self.history_of_users, self.settings.anchor_items)

    @property
    def titles(self) -> DataFrame:
        return self.items.select(S.ITEM_ID, S.TITLE)


def _buy_again(i: SourceInputs, n: int) -> DataFrame:
    return buy_again(i.history_of_users, i.as_of, i.settings.recency_half_life_days, n)


def _popularity(i: SourceInputs, n: int) -> DataFrame:
    s = i.settings
    return global_popularity(
        i.purchases, i.users, i.as_of, s.popularity_window_days, s.popularity_half_life_days, n
    )


def cold_start(i: SourceInputs, n: int) -> DataFrame:
    """The ``n`` most popular items (the popularity source's list) for the users who bought no product
    before the date: no source proposes anything for them, and a customer who only paid postage or
    returned something still gets a list."""
    cold = i.users.join(i.purchases.select(S.USER_ID), S.USER_ID, "left_anti")
    return _popularity(replace(i, targets=cold), n)


def _segment_popularity(i: SourceInputs, n: int) -> DataFrame:
    s = i.settings
    proposed = segment_popularity(
        i.purchases, i.segments, i.as_of, s.popularity_window_days, s.popularity_half_life_days, n
    )
    return proposed if i.targets is None else proposed.join(i.users, S.USER_ID, "left_semi")


def _seasonal(i: SourceInputs, n: int) -> DataFrame:
    return seasonal_popularity(i.purchases, i.users, i.as_of, i.settings.seasonal_window_days, n)


def _co_occurrence(i: SourceInputs, n: int) -> DataFrame:
    s = i.settings
    neighbours = cooccurrence_neighbours(
        i.purchases, s.max_basket_size, s.min_co_count, s.neighbours_per_item, s.co_occurrence_max_orders
    )
    return from_neighbours(i.anchors, neighbours, i.titles, "co_occurrence", "often bought with %s", n)


def _als(i: SourceInputs, n: int) -> DataFrame:
    # a training sample's fit is capped; the run's date fits on everyone
    cap = None if i.targets is None else i.settings.als.max_fit_users
    return als_candidates(i.history, i.users, i.settings.als, n, cap)


def _content(i: SourceInputs, n: int) -> DataFrame:
    if i.embeddings is None:
        raise ConfigError("the content source needs the item embeddings (the enrich stage)")
    products = i.items.filter(F.col(S.IS_PRODUCT))
    neighbours = content_neighbours(i.embeddings, products, i.settings.neighbours_per_item)
    return from_neighbours(i.anchors, neighbours, i.titles, "content", "similar to %s", n)


def _similar_users(i: SourceInputs, n: int) -> DataFrame:
    return similar_users(i.purchases, i.users, i.as_of, i.settings.similar_users, n)


# Source name (the key of candidates.limits) -> its candidates, at most n per user; unioned in this order.
SOURCES: dict[str, Callable[[SourceInputs, int], DataFrame]] = {
    "buy_again": _buy_again,
    "popularity": _popularity,
    "segment_popularity": _segment_popularity,
    "co_occurrence": _co_occurrence,
    "als": _als,
    "content": _content,
    "similar_users": _similar_users,
    "seasonal": _seasonal,
}


def generate_candidates(inputs: SourceInputs) -> DataFrame:
    """Every source with a limit above 0, for the users of ``inputs.segments``, unioned; when the
    popularity source is off, the popular items for the users without a purchase (:func:`cold_start`).

    ``purchases`` (read by every source) and ``history`` (buy-again, the anchors, and ALS, which fits on
    it before the candidates are written) are persisted by the callers.
    """
    limits, fill = inputs.settings.limits, inputs.settings.cold_start_popular
    frames = [source(inputs, limits[name]) for name, source in SOURCES.items() if limits.get(name, 0)]
    if not frames:
        raise ConfigError("candidates.limits turns every source off")
    # the run's lists only: the ranker learns the order of what the sources propose for a history
    if fill and inputs.targets is None and not limits.get("popularity", 0):
        frames.append(cold_start(inputs, fill))
    as_of = F.lit(inputs.as_of).cast("date")
    return functools.reduce(DataFrame.unionByName, frames).withColumn(S.AS_OF, as_of)


def run_candidates(
    store: TableStore,
    history: History,
    settings: CandidateSettings,
    run_id: str,
    users: DataFrame | None = None,
) -> CandidateReport:
    """The candidates of every user with a segment on the history's date, or only of ``users``
    (``user_id``; a training cut-off's sample): a user's candidates do not depend on whom else the
    sources propose for, since every model (popularity, co-occurrence, ALS, the user neighbours) is
    fitted on all users' purchases (unless ``candidates.als.max_fit_users`` caps the ALS fit of a sample)."""
    as_of, items = history.as_of, history.items
    segments = store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(as_of))
    # read by all six sources: one scan of the events instead of one per source
    purchases = history.purchases().persist(StorageLevel.MEMORY_AND_DISK)
    # one aggregation for buy-again, anchors and ALS (which fits on it before the candidates are written)
    per_item = purchase_history(purchases).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        embeddings = store.read_table(S.ITEM_EMBEDDINGS)
        candidates = generate_candidates(
            SourceInputs(purchases, per_item, segments, items, embeddings, settings, as_of, users)
        )
        write = store.replace_date(candidates, S.CANDIDATES, as_of=as_of, run_id=run_id, stage="candidates")
    finally:
        per_item.unpersist()
        purchases.unpersist()
    written = store.read_table(S.CANDIDATES).filter(F.col(S.AS_OF) == F.lit(as_of))
    per_source = {
        r["source"]: (int(r["users"]), float(r["rows"]) / max(int(r["users"]), 1))
        for r in written.groupBy("source")
        .agg(F.countDistinct(S.USER_ID).alias("users"), F.count("*").alias("rows"))
        .orderBy("source")
        .collect()  # one row per source
    }
    reached = written.select(S.USER_ID).distinct().count()
    return CandidateReport(as_of, reached, per_source, write)
