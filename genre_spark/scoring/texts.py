"""The texts language models read: one profile per user, one description per item. Spark built-ins only.

Profile: "Customer in segment 'high-value loyal'. Buys mostly: candle / holder / light; bag / gift /
jumbo. Recently: WHITE HANGING HEART T-LIGHT HOLDER, ...", cut to ``max_chars``.
Item: "WHITE HANGING HEART T-LIGHT HOLDER (candle / holder / light; mid price)".
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import ProfileTextSettings
from genre_spark.history import History
from genre_spark.scoring.scorers import ITEM_TEXT, PROFILE_TEXT


def _ordered_join(values: Column, separator: str) -> Column:
    """Join an array<struct<pos, text>> by ascending pos."""
    return F.array_join(F.transform(F.array_sort(values), lambda v: v["text"]), separator)


def profile_texts(
    segments: DataFrame,
    features: DataFrame,
    history: History,
    settings: ProfileTextSettings,
) -> DataFrame:
    """(user_id, profile_text) for the users in ``segments`` (one as-of date), from the history before it."""
    items = history.items
    labels = items.filter(F.col(S.CATEGORY_ID).isNotNull()).select(S.CATEGORY_ID, S.CATEGORY_LABEL).distinct()
    top = (
        features.select(S.USER_ID, F.posexplode("top_category_ids").alias("pos", S.CATEGORY_ID))
        .filter(F.col("pos") < settings.top_categories)
        .join(F.broadcast(labels), S.CATEGORY_ID)
        .groupBy(S.USER_ID)
        .agg(
            _ordered_join(F.collect_list(F.struct("pos", F.col(S.CATEGORY_LABEL).alias("text"))), "; ").alias(
                "_cats"
            )
        )
    )
    last = history.purchases().groupBy(S.USER_ID, S.ITEM_ID).agg(F.max(S.EVENT_TS).alias("_ts"))
    newest_first = Window.partitionBy(S.USER_ID).orderBy(F.desc("_ts"), F.asc(S.ITEM_ID))
    recent = (
        last.withColumn("pos", F.row_number().over(newest_first))
        .filter(F.col("pos") <= settings.recent_items)
        .join(items.select(S.ITEM_ID, F.col(S.TITLE).alias("text")), S.ITEM_ID)
        .filter(F.col("text").isNotNull())
        .groupBy(S.USER_ID)
        .agg(_ordered_join(F.collect_list(F.struct("pos", "text")), ", ").alias("_recent"))
    )
    text = F.concat_ws(
        " ",
        F.format_string("Customer in segment '%s'.", F.col(S.SEGMENT_LABEL)),
        F.when(F.col("_cats") != "", F.format_string("Buys mostly: %s.", F.col("_cats"))),
        F.when(F.col("_recent") != "", F.format_string("Recently: %s.", F.col("_recent"))),
    )
    return (
        segments.select(S.USER_ID, S.SEGMENT_LABEL)
        .join(top, S.USER_ID, "left")
        .join(recent, S.USER_ID, "left")
        .select(S.USER_ID, F.substring(text, 1, settings.max_chars).alias(PROFILE_TEXT))
    )


def item_texts(items: DataFrame) -> DataFrame:
    """(item_id, title, item_text) for products with a title."""
    facts = F.concat_ws("; ", F.col(S.CATEGORY_LABEL), F.concat(F.col(S.PRICE_BAND), F.lit(" price")))
    described = F.when(facts != "", F.format_string("%s (%s)", F.col(S.TITLE), facts)).otherwise(
        F.col(S.TITLE)
    )
    return items.filter(F.col(S.IS_PRODUCT) & F.col(S.TITLE).isNotNull()).select(
        S.ITEM_ID, S.TITLE, described.alias(ITEM_TEXT)
    )
