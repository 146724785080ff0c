"""Features of (user, item) candidate pairs for the learned ranker, from data before the cut-off only.

Spark built-ins only: one aggregation per grain (user x item x order, user x item, user, item) over the
purchases before the cut-off, joined to the candidate pool. Every feature is a double; a feature that
does not apply (the gap between orders of an item bought once, a scorer that did not reach the pair)
is null, which the ranker reads as missing.

Groups (each can be left out of a model, which is how evaluation measures what a group buys):
- ``history``: the user's own history with the item (orders, shares, decayed counts, is it due),
- ``item``: the item over all users (popularity and trend, repurchase rate, age, price),
- ``season``: the same days one year earlier: the item's buyers in the window the labels cover, shifted back
  a year, against the window before it, and the user's own orders of the item then,
- ``user``: the user (orders, repeat rate, basket size, recency),
- ``sources``: each candidate source's normalised score and rank,
- ``lm``: the language-model scorers' scores,
- ``segment``: the user's segment and the strategy the segment gets.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidate_scores import best_per_user, normalised_score
from genre_spark.errors import ConfigError
from genre_spark.history import YEAR_DAYS, days_before, decay

HALF_LIVES = S.DECAY_HALF_LIVES
POPULARITY_WEEKS = S.POPULARITY_WEEKS
RECENT_ORDERS = 5  # the share of the user's last this many orders that hold the item
MISSING_RANK = 1000.0  # rank feature of a source that did not propose the item
STRATEGY_INDEX = S.STRATEGY_INDEX
FEATURE_GROUPS = S.RANKER_FEATURE_GROUPS


def feature_columns(without: frozenset[str] = frozenset()) -> list[str]:
    """The model's input columns, in a fixed order, leaving out the groups named in ``without``."""
    unknown = sorted(without - set(FEATURE_GROUPS))
    if unknown:
        raise ConfigError(f"unknown feature group(s) {unknown}; valid choices: {sorted(FEATURE_GROUPS)}")
    return [c for group, cols in FEATURE_GROUPS.items() if group not in without for c in cols]


def a_year_back(age: Column, season_days: int, windows_before: int = 0) -> Column:
    """Whether a purchase ``age`` days before the cut-off falls in the ``season_days`` after the cut-off a
    year earlier (``windows_before``: in the window of as many days that many windows before that)."""
    newest = YEAR_DAYS + windows_before * season_days  # the age of the window's first day
    return (age <= F.lit(newest)) & (age > F.lit(newest - season_days))


def _user_item(purchases: DataFrame, cutoff: dt.date, season_days: int) -> DataFrame:
    """history features per (user, item) the user bought."""
    per_order = purchases.groupBy(S.USER_ID, S.ITEM_ID, S.ORDER_ID).agg(
        F.min(days_before(cutoff, S.EVENT_TS)).alias("_age"), F.sum(S.QUANTITY).alias("_qty")
    )
    # the user's orders, newest first (ties by order id), to tell which orders are the last few
    orders = purchases.groupBy(S.USER_ID, S.ORDER_ID).agg(F.max(S.EVENT_TS).alias("_ts"))
    newest = Window.partitionBy(S.USER_ID).orderBy(F.desc("_ts"), F.desc(S.ORDER_ID))
    recent = orders.withColumn("_recent", (F.row_number().over(newest) <= RECENT_ORDERS).cast("int"))
    per_order = per_order.join(recent.select(S.USER_ID, S.ORDER_ID, "_recent"), [S.USER_ID, S.ORDER_ID])
    age = F.col("_age")
    pairs = per_order.groupBy(S.USER_ID, S.ITEM_ID).agg(
        F.count("*").cast("double").alias("ui_orders"),
        F.sum("_qty").cast("double").alias("_qty"),
        *[F.sum(decay(age, h)).alias(f"ui_decay_{h}d") for h in HALF_LIVES],
        F.min(age).cast("double").alias("ui_days_since_last"),
        F.max(age).cast("double").alias("ui_days_since_first"),
        F.sum("_recent").cast("double").alias("_in_recent"),
        F.sum(a_year_back(age, season_days).cast("double")).alias("ui_orders_last_year"),
    )
    users = recent.groupBy(S.USER_ID).agg(
        F.count("*").cast("double").alias("_u_orders"), F.sum("_recent").cast("double").alias("_u_recent")
    )
    user_qty = pairs.groupBy(S.USER_ID).agg(F.sum("_qty").alias("_u_qty"))
    # rounded: sums of the same decays in another order differ in the last bits, and must tie all the same
    by_decay = Window.partitionBy(S.USER_ID).orderBy(F.desc(F.round("ui_decay_60d", 9)), F.asc(S.ITEM_ID))
    gap = F.when(
        F.col("ui_orders") > 1,
        (F.col("ui_days_since_first") - F.col("ui_days_since_last")) / (F.col("ui_orders") - 1),
    )
    return (
        pairs.join(users, S.USER_ID)
        .join(user_qty, S.USER_ID)
        .select(
            S.USER_ID,
            S.ITEM_ID,
            "ui_orders",
            (F.col("ui_orders") / F.col("_u_orders")).alias("ui_order_share"),
            (F.col("_qty") / F.col("_u_qty")).alias("ui_quantity_share"),
            *[f"ui_decay_{h}d" for h in HALF_LIVES],
            F.row_number().over(by_decay).cast("double").alias("ui_decay_60d_rank"),
            "ui_days_since_last",
            "ui_days_since_first",
            gap.alias("ui_gap_days"),
            (F.col("ui_days_since_last") / F.greatest(gap, F.lit(1.0))).alias("ui_due"),
            (F.col("_in_recent") / F.col("_u_recent")).alias("ui_recent_order_share"),
            "ui_orders_last_year",
        )
    )


def _users(purchases: DataFrame, cutoff: dt.date) -> DataFrame:
    """user features, with the user's median unit price for the price ratio."""
    per_order = purchases.groupBy(S.USER_ID, S.ORDER_ID).agg(
        F.countDistinct(S.ITEM_ID).alias("_basket"), F.min(days_before(cutoff, S.EVENT_TS)).alias("_age")
    )
    orders = per_order.groupBy(S.USER_ID).agg(
        F.count("*").cast("double").alias("u_orders"),
        F.avg("_basket").alias("u_basket_size"),
        F.min("_age").cast("double").alias("u_days_since_last_order"),
    )
    items = (
        purchases.groupBy(S.USER_ID, S.ITEM_ID)
        .agg(F.countDistinct(S.ORDER_ID).alias("_n"))
        .groupBy(S.USER_ID)
        .agg(
            F.count("*").cast("double").alias("u_distinct_items"),
            F.avg((F.col("_n") > 1).cast("double")).alias("u_repeat_rate"),
        )
    )
    prices = purchases.groupBy(S.USER_ID).agg(F.median(S.UNIT_PRICE).alias("_user_price"))
    return orders.join(items, S.USER_ID).join(prices, S.USER_ID)


def _items(purchases: DataFrame, cutoff: dt.date, season_days: int) -> DataFrame:
    """item and season features over all users (the catalog is small: broadcast into the pair join).
    Buyers are counted from one (item, user) aggregate: a user bought in a window when any order did."""
    age = days_before(cutoff, S.EVENT_TS)
    per_user = purchases.groupBy(S.ITEM_ID, S.USER_ID).agg(
        F.countDistinct(S.ORDER_ID).alias("_n"),
        F.min(age).alias("_last"),
        F.max(a_year_back(age, season_days).cast("int")).alias("_season"),
        F.max(a_year_back(age, season_days, windows_before=1).cast("int")).alias("_before"),
    )
    buyers = per_user.groupBy(S.ITEM_ID).agg(
        *[
            F.sum((F.col("_last") <= 7 * w).cast("double")).alias(f"item_buyers_{w}w")
            for w in POPULARITY_WEEKS
        ],
        F.avg((F.col("_n") > 1).cast("double")).alias("item_repurchase_rate"),
        F.sum("_season").cast("double").alias("item_buyers_last_year"),
        F.sum("_before").cast("double").alias("_before"),
    )
    lines = purchases.groupBy(S.ITEM_ID).agg(
        F.max(age).cast("double").alias("item_age_days"), F.median(S.UNIT_PRICE).alias("item_price")
    )
    b1, b4, b12 = (F.col(f"item_buyers_{w}w") for w in POPULARITY_WEEKS)
    season, before = F.col("item_buyers_last_year"), F.col("_before")
    return buyers.join(lines, S.ITEM_ID).select(
        S.ITEM_ID,
        *[f"item_buyers_{w}w" for w in POPULARITY_WEEKS],
        (4 * b1 / (b4 + 1)).alias("item_trend_1w_4w"),
        (3 * b4 / (b12 + 1)).alias("item_trend_4w_12w"),
        "item_repurchase_rate",
        "item_age_days",
        "item_price",
        "item_buyers_last_year",
        (season / (before + 1)).alias("item_season_trend"),
    )


def _sources(candidates: DataFrame) -> DataFrame:
    """One row per candidate pair: each source's normalised score and rank (missing: 0 and a far rank)."""
    per_source = (
        candidates.withColumn("_norm", normalised_score())
        .groupBy(S.USER_ID, S.ITEM_ID)
        .pivot("source", list(S.CANDIDATE_SOURCES))
        .agg(F.max("_norm").alias("score"), F.min("source_rank").cast("double").alias("rank"))
    )
    proposed = [F.col(f"{s}_score").isNotNull().cast("double") for s in S.CANDIDATE_SOURCES]
    return per_source.select(
        S.USER_ID,
        S.ITEM_ID,
        *[F.coalesce(F.col(f"{s}_score"), F.lit(0.0)).alias(f"{s}_score") for s in S.CANDIDATE_SOURCES],
        *[
            F.coalesce(F.col(f"{s}_rank"), F.lit(MISSING_RANK)).alias(f"{s}_rank")
            for s in S.CANDIDATE_SOURCES
        ],
        sum(proposed[1:], proposed[0]).alias("n_sources"),
    )


def shortlisted(pairs: DataFrame, n: int) -> DataFrame:
    """Each user's ``n`` pairs best placed by any source: by the best of their source ranks (the sources'
    lists merged round-robin), ties by the sum of their normalised source scores."""
    best_rank = F.least(*[F.col(f"{s}_rank") for s in S.CANDIDATE_SOURCES])
    total = sum((F.col(f"{s}_score") for s in S.CANDIDATE_SOURCES), F.lit(0.0))
    return best_per_user(pairs, [best_rank.asc(), total.desc()], n).drop("shortlist_rank")


def pair_features(
    candidates: DataFrame,
    purchases: DataFrame,
    segments: DataFrame,
    scores: DataFrame | None,
    cutoff: dt.date,
    season_days: int,
    sampled: bool = False,
    shortlist: int | None = None,
) -> DataFrame:
    """(user_id, item_id, *feature_columns()) for the candidate pairs of one cut-off.

    ``candidates``: the candidates table's rows for the cut-off; ``purchases``: product purchase lines
    strictly before ``cutoff`` (:meth:`genre_spark.history.History.purchases`); ``segments``: user_id,
    segment_id, strategy_index; ``scores``: the scorers' rows for the cut-off, or None; ``season_days``:
    the width of the season window (the label window's, so that a cut-off's season features look at the
    days its labels cover, a year earlier); ``sampled``: the candidates are for a sample of the users (a
    training cut-off's), so the user-side aggregations read only the sample's purchases; ``shortlist``:
    keep each user's this many pairs best placed by any source (:func:`shortlisted`; their features are
    those among all the user's candidates), None: every pair.
    """
    # by user, once: the joins below are per user or per pair (requireAllClusterKeysForCoPartition, in
    # conf/default.yaml, lets the pair joins read the user partitioning)
    pairs = _sources(candidates.repartition(S.USER_ID))
    if shortlist is not None:
        pairs = shortlisted(pairs, shortlist)
    if scores is not None:
        lm = scores.groupBy(S.USER_ID, S.ITEM_ID).pivot("scorer", list(S.SCORER_NAMES)).agg(F.max("score"))
        pairs = pairs.join(lm, [S.USER_ID, S.ITEM_ID], "left")
    else:
        pairs = pairs.select("*", *[F.lit(None).cast("double").alias(n) for n in S.SCORER_NAMES])
    own = purchases.join(candidates.select(S.USER_ID), S.USER_ID, "left_semi") if sampled else purchases
    users = _users(own, cutoff)
    items = _items(purchases, cutoff, season_days)  # the item over all users
    joined = (
        pairs.join(_user_item(own, cutoff, season_days), [S.USER_ID, S.ITEM_ID], "left")
        .join(users, S.USER_ID, "left")
        .join(F.broadcast(items), S.ITEM_ID, "left")
        .join(segments.select(S.USER_ID, S.SEGMENT_ID, STRATEGY_INDEX), S.USER_ID, "left")
    )
    never: dict[str, Column] = {  # the user never bought the item: counts are 0, not missing
        c: F.coalesce(F.col(c), F.lit(0.0))
        for c in (
            "ui_orders",
            "ui_order_share",
            "ui_quantity_share",
            "ui_recent_order_share",
            "ui_orders_last_year",
            *[f"ui_decay_{h}d" for h in HALF_LIVES],
        )
    }
    computed: dict[str, Column] = {
        **never,
        "ui_decay_60d_rank": F.coalesce(F.col("ui_decay_60d_rank"), F.lit(MISSING_RANK)),
        "item_price_ratio": F.col("item_price") / F.col("_user_price"),
        **{f"{n}_score": F.col(n) for n in S.SCORER_NAMES},
    }
    columns = feature_columns()
    return joined.select(
        S.USER_ID,
        S.ITEM_ID,
        *[computed.get(c, F.col(c)).cast("double").alias(c) for c in columns],
    )
