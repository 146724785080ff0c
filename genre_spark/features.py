"""Per-user features as of a date, from events before that date only. Spark built-ins, no UDF.

One aggregation per user (partial aggregation map-side, so a user with a million events costs
one row per partition before the shuffle, not a hot partition).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import FeatureSettings
from genre_spark.history import History
from genre_spark.storage import TableStore, WriteResult


@dataclass(frozen=True)
class FeatureReport:
    as_of: dt.date
    users: int
    without_purchase: int | None  # None: the features of a sample of the users (a training cut-off's)
    write: WriteResult

    def format(self) -> str:
        head = f"features as of {self.as_of}: {self.users:,} users"
        if self.without_purchase is None:
            return f"{head} (a sample: the learned ranker's training users)"
        return (
            f"{head}; {self.without_purchase:,} known users have no purchase before {self.as_of} and get "
            "no features"
        )


def _sum_if(condition: Column, value: Column) -> Column:
    return F.sum(F.when(condition, value).otherwise(F.lit(0.0)))


def compute_user_features(
    history: History,
    hour_bands: Mapping[str, tuple[int, int]],
    n_categories: int,
    top_categories: int,
) -> DataFrame:
    """One row per user with at least one purchase before the history's date."""
    as_of = history.as_of
    events = history.events.join(
        F.broadcast(history.items.select(S.ITEM_ID, S.PRICE_BAND, S.CATEGORY_ID)), S.ITEM_ID, "left"
    )
    aggregates = _spend_aggregates(hour_bands, n_categories)
    per_user = events.groupBy(S.USER_ID).agg(*aggregates).filter(F.col("frequency") > 0)

    monetary = F.col("monetary")

    def share(col: str) -> Column:
        return F.when(monetary > 0, F.col(col) / monetary).otherwise(F.lit(0.0))

    shares = [share(f"_cat_{c}") for c in range(n_categories)]
    ranked = _top_shares(shares, top_categories)
    return per_user.select(
        S.USER_ID,
        F.lit(as_of).cast("date").alias(S.AS_OF),
        F.datediff(F.lit(as_of), F.to_date("_last")).alias("recency_days"),
        F.col("frequency").cast("int").alias("frequency"),
        monetary.alias("monetary"),
        (monetary / F.col("frequency")).alias("avg_order_value"),
        F.col("n_distinct_items").cast("int").alias("n_distinct_items"),
        F.datediff(F.lit(as_of), F.to_date("_first")).alias("tenure_days"),
        F.least(share("_returned"), F.lit(1.0)).alias("return_rate"),
        share("_weekend").alias("weekend_share"),
        *[share(f"_hour_{name}").alias(f"share_{name}") for name in S.HOUR_BANDS],
        *[share(f"_band_{b}").alias(f"share_{b}") for b in S.PRICE_BANDS],
        F.array(*shares).alias("category_shares"),
        F.transform(ranked, lambda x: x["id"]).alias("top_category_ids"),
        F.transform(ranked, lambda x: x["s"]).alias("top_category_shares"),
    )


def _spend_aggregates(hour_bands: Mapping[str, tuple[int, int]], n_categories: int) -> list[Column]:
    """RFM and the spend per return, weekend, hour band, price band and category (one pass per user)."""
    is_purchase = F.col(S.EVENT_TYPE) == S.PURCHASE
    spend = F.col(S.QUANTITY) * F.col(S.UNIT_PRICE)
    hour = F.hour(S.EVENT_TS)
    weekend = F.dayofweek(S.EVENT_TS).isin(1, 7)  # Sunday, Saturday
    return [
        F.max(F.when(is_purchase, F.col(S.EVENT_TS))).alias("_last"),
        F.min(F.when(is_purchase, F.col(S.EVENT_TS))).alias("_first"),
        # exact distinct counts as the sizes of sets (nulls left out): two count-distincts in one aggregation
        # make Spark copy every event once per distinct column (an Expand) before the shuffle
        F.size(F.collect_set(F.when(is_purchase, F.col(S.ORDER_ID)))).alias("frequency"),
        F.size(F.collect_set(F.when(is_purchase, F.col(S.ITEM_ID)))).alias("n_distinct_items"),
        _sum_if(is_purchase, spend).alias("monetary"),
        _sum_if(F.col(S.EVENT_TYPE) == S.RETURN, spend).alias("_returned"),
        _sum_if(is_purchase & weekend, spend).alias("_weekend"),
        *[
            _sum_if(is_purchase & (hour >= start) & (hour < end), spend).alias(f"_hour_{name}")
            for name, (start, end) in hour_bands.items()
        ],
        *[
            _sum_if(is_purchase & (F.col(S.PRICE_BAND) == b), spend).alias(f"_band_{b}")
            for b in S.PRICE_BANDS
        ],
        *[
            _sum_if(is_purchase & (F.col(S.CATEGORY_ID) == c), spend).alias(f"_cat_{c}")
            for c in range(n_categories)
        ],
    ]


def _top_shares(shares: list[Column], top: int) -> Column:
    """(s, id) of the ``top`` largest positive shares, largest first (ties: the higher id first)."""
    pairs = F.array(*[F.struct(share.alias("s"), F.lit(c).alias("id")) for c, share in enumerate(shares)])
    return F.slice(F.filter(F.sort_array(pairs, asc=False), lambda x: x["s"] > 0), 1, top)


def run_features(
    store: TableStore,
    history: History,
    settings: FeatureSettings,
    n_categories: int,
    run_id: str,
    sample: DataFrame | None = None,
) -> FeatureReport:
    """The features of every user with a purchase before the history's date, or only of those in
    ``sample`` (user_id; a training cut-off's: only their events are aggregated)."""
    as_of = history.as_of
    if sample is not None:
        history = replace(history, events=history.events.join(sample, S.USER_ID, "left_semi"))
    features = compute_user_features(history, settings.hour_bands, n_categories, settings.top_categories)
    write = store.replace_date(features, S.USER_FEATURES, as_of=as_of, run_id=run_id, stage="features")
    users = store.read_table(S.USER_FEATURES).filter(F.col(S.AS_OF) == F.lit(as_of)).count()
    without = None if sample is not None else store.read_table(S.USERS).count() - users
    return FeatureReport(as_of, users, without, write)
