"""User features on inline users, values computed by hand."""

from __future__ import annotations

import datetime as dt

from chispa import assert_approx_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.features import compute_user_features
from tests.conftest import history_of

AS_OF = dt.date(2011, 12, 9)
HOURS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}
EVENT_SCHEMA = (
    "user_id string, item_id string, event_type string, quantity int, unit_price double, "
    "event_ts timestamp, order_id string"
)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def events(spark: SparkSession, extra: list[tuple] | None = None) -> DataFrame:  # type: ignore[type-arg]
    rows = [
        # u1: Thursday-morning order (A x2 @5, B x1 @20), Saturday-evening order (A x1), B returned
        ("u1", "A", "purchase", 2, 5.0, ts("2011-12-01 10:00:00"), "o1"),
        ("u1", "B", "purchase", 1, 20.0, ts("2011-12-01 10:00:00"), "o1"),
        ("u1", "A", "purchase", 1, 5.0, ts("2011-12-03 20:00:00"), "o2"),
        ("u1", "B", "return", 1, 20.0, ts("2011-12-04 09:00:00"), "C1"),
        # u2: only a return before as_of -> no features
        ("u2", "A", "return", 1, 5.0, ts("2011-12-02 12:00:00"), "C2"),
        # u3: an uncatalogued item late on Thursday evening; the purchase at as_of 00:00 is not "before"
        ("u3", "Z", "purchase", 3, 1.0, ts("2011-12-08 23:59:00"), "o3"),
        ("u3", "Z", "purchase", 100, 1.0, ts("2011-12-09 00:00:00"), "o4"),
        # u4: first purchase after as_of -> absent
        ("u4", "A", "purchase", 1, 5.0, ts("2011-12-10 08:00:00"), "o5"),
    ]
    return spark.createDataFrame(rows + (extra or []), EVENT_SCHEMA)


def items(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [("A", "budget", 0), ("B", "premium", 1)], "item_id string, price_band string, category_id int"
    )


def test_features_by_hand(spark: SparkSession) -> None:
    result = compute_user_features(
        history_of(events(spark), items(spark), AS_OF), HOURS, n_categories=2, top_categories=1
    )
    expected = spark.createDataFrame(
        [
            (
                "u1",
                AS_OF,
                6,
                2,
                35.0,
                17.5,
                2,
                8,
                20 / 35,
                5 / 35,
                0.0,
                30 / 35,
                0.0,
                5 / 35,
                15 / 35,
                0.0,
                0.0,
                0.0,
                20 / 35,
                [15 / 35, 20 / 35],
                [1],
                [20 / 35],
            ),
            (
                "u3",
                AS_OF,
                1,
                1,
                3.0,
                3.0,
                1,
                1,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                1.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                [0.0, 0.0],
                [],
                [],
            ),
        ],
        S.CONTRACTS[S.USER_FEATURES],
    )
    assert_approx_df_equality(result.orderBy(S.USER_ID), expected, precision=1e-9, ignore_nullable=True)


def test_no_leakage_from_events_on_or_after_as_of(spark: SparkSession) -> None:
    before = compute_user_features(history_of(events(spark), items(spark), AS_OF), HOURS, 2, 1)
    future = [
        ("u1", "B", "purchase", 50, 20.0, ts("2011-12-09 00:00:00"), "f1"),
        ("u1", "B", "return", 1, 20.0, ts("2012-01-05 10:00:00"), "f2"),
        ("u2", "A", "purchase", 1, 5.0, ts("2011-12-20 10:00:00"), "f3"),
    ]
    with_future = compute_user_features(history_of(events(spark, future), items(spark), AS_OF), HOURS, 2, 1)
    assert_approx_df_equality(before.orderBy(S.USER_ID), with_future.orderBy(S.USER_ID), precision=1e-12)
    assert with_future.filter(F.col(S.USER_ID) == "u2").count() == 0
