"""The discriminator on inline data: labels and features come only from before their dates; it learns."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import Settings
from genre_spark.discriminator import (
    LABEL,
    PROBABILITY,
    candidate_features,
    feature_columns,
    fit_discriminator,
    label_pairs,
    predict,
)

TRAIN = dt.date(2011, 11, 1)  # candidates generated as of this date ...
AS_OF = dt.date(2011, 11, 29)  # ... labelled by purchases in [TRAIN, AS_OF)


def events(spark: SparkSession, rows: list[tuple[str, str, str]]) -> DataFrame:
    """(user, item, timestamp) purchases with the columns product_purchases reads."""
    return spark.createDataFrame(rows, "user_id string, item_id string, ts string").select(
        S.USER_ID,
        S.ITEM_ID,
        F.lit(S.PURCHASE).alias(S.EVENT_TYPE),
        F.to_timestamp("ts").alias(S.EVENT_TS),
        F.concat(F.lit("o-"), F.col("ts")).alias(S.ORDER_ID),
        F.lit(1).alias(S.QUANTITY),
    )


def items(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(i, 1.0 + n, "mid", True) for n, i in enumerate("ABCDE")],
        "item_id string, unit_price double, price_band string, is_product boolean",
    )


def candidates(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [("u1", i, "als", 5.0 - n, n + 1) for n, i in enumerate("ABCDE")],
        "user_id string, item_id string, source string, source_score double, source_rank int",
    )


def test_labels_come_only_from_the_window_before_as_of(spark: SparkSession) -> None:
    history = events(
        spark,
        [
            ("u1", "A", "2011-10-20 10:00:00"),  # before the window: a feature, not a label
            ("u1", "B", "2011-11-01 00:00:00"),  # first instant of the window
            ("u1", "C", "2011-11-28 23:59:59"),  # last instant of the window
            ("u1", "D", "2011-11-29 00:00:00"),  # on as_of: the evaluation period, never a label
            ("u1", "E", "2011-12-05 10:00:00"),  # after as_of
        ],
    )
    pairs = candidates(spark).select(S.USER_ID, S.ITEM_ID)
    labelled = label_pairs(pairs, history, items(spark), TRAIN, AS_OF)
    got = {r[S.ITEM_ID]: r[LABEL] for r in labelled.collect()}
    assert got == {"A": 0.0, "B": 1.0, "C": 1.0, "D": 0.0, "E": 0.0}


def test_features_ignore_events_on_or_after_their_date(spark: SparkSession) -> None:
    past = [("u1", "A", "2011-10-20 10:00:00"), ("u2", "A", "2011-10-25 10:00:00")]
    future = [("u1", "B", "2011-11-01 00:00:00"), ("u1", "A", "2011-11-02 00:00:00")]
    user_features = spark.createDataFrame(
        [("u1", 3, 2, 10.0, 4, 100, 0.0)],
        "user_id string, recency_days int, frequency int, monetary double, n_distinct_items int, "
        "tenure_days int, return_rate double",
    )
    segments = spark.createDataFrame([("u1", 2)], "user_id string, segment_id int")

    def features(rows: list[tuple[str, str, str]]) -> DataFrame:
        return candidate_features(
            candidates(spark), None, user_features, segments, events(spark, rows), items(spark), TRAIN
        ).orderBy(S.ITEM_ID)

    with_future = features(past + future)
    assert_df_equality(with_future, features(past))
    assert with_future.columns == [S.USER_ID, S.ITEM_ID, *feature_columns()]
    a = with_future.filter(F.col(S.ITEM_ID) == "A").first()
    assert a is not None and a.user_item_orders == 1.0 and a.days_since_user_bought_item == 12.0
    assert a.als_score == 1.0 and a.buy_again_rank == 1000.0 and a.n_sources == 1.0


def test_the_classifier_learns_a_separable_signal(spark: SparkSession, settings: Settings) -> None:
    columns = feature_columns()
    rows = []
    for n in range(400):
        bought = n % 5 == 0
        values = {c: 0.0 for c in columns} | {"buy_again_score": 0.9 if bought else 0.1, "item_price": n % 7}
        rows.append((f"u{n}", f"i{n % 11}", *[float(values[c]) for c in columns], 1.0 if bought else 0.0))
    schema = ", ".join(
        ["user_id string", "item_id string", *[f"{c} double" for c in columns], f"{LABEL} double"]
    )
    labelled = spark.createDataFrame(rows, schema)
    for model in ("logistic", "gbt"):
        tuned = settings.discriminator.model_copy(
            update={"model": model, "max_iter": 10, "negative_fraction": 1.0}
        )
        fitted, report = fit_discriminator(labelled, tuned)
        assert report.pairs == 400 and report.positives == 80 and report.auc_train > 0.99
        p = {r[S.USER_ID]: r[PROBABILITY] for r in predict(fitted, labelled.drop(LABEL)).collect()}
        assert min(p["u0"], p["u5"]) > max(p["u1"], p["u2"])
