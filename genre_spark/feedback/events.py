"""Feedback events: served lists and purchases become impressions and purchases; feedback about
users or items a run never served is quarantined with a rule id, never dropped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.history import midnight

# quarantine rule ids, checked in this order (the first failed rule is the reason)
BAD_EVENT_TYPE = "bad_event_type"  # not one of impression, click, purchase
UNKNOWN_USER = "unknown_user"  # the run served no list to this user
UNSERVED_ITEM = "unserved_item"  # the run served the user a list without this item
FEEDBACK_RULES = (BAD_EVENT_TYPE, UNKNOWN_USER, UNSERVED_ITEM)


FEEDBACK_COLUMNS = [f.name for f in S.CONTRACTS[S.FEEDBACK_EVENTS].fields]


def feedback_from_purchases(served: DataFrame, events: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """``feedback_events`` rows for the ``served`` recommendations (run_id, user_id, item_id, ...).

    An impression per served row, at ``start`` 00:00 UTC; a purchase per served (run, user, item) that the
    user bought in ``[start, end)``, at the first such purchase.
    """
    bought = (
        events.where(
            (F.col(S.EVENT_TYPE) == S.PURCHASE)
            & (F.col(S.EVENT_TS) >= midnight(start))
            & (F.col(S.EVENT_TS) < midnight(end))
        )
        .groupBy(S.USER_ID, S.ITEM_ID)
        .agg(F.min(S.EVENT_TS).alias(S.EVENT_TS))
    )
    impressions = served.select(
        S.RUN_ID,
        S.USER_ID,
        S.ITEM_ID,
        F.lit(S.IMPRESSION).alias(S.EVENT_TYPE),
        midnight(start).alias(S.EVENT_TS),
    )
    purchases = (
        served.select(S.RUN_ID, S.USER_ID, S.ITEM_ID)
        .distinct()
        .join(bought, [S.USER_ID, S.ITEM_ID])
        .select(S.RUN_ID, S.USER_ID, S.ITEM_ID, F.lit(S.PURCHASE).alias(S.EVENT_TYPE), S.EVENT_TS)
    )
    return impressions.unionByName(purchases)


@dataclass(frozen=True)
class FeedbackSplit:
    valid: DataFrame  # feedback_events contract
    quarantined: DataFrame  # quarantine contract


def _value(column: str) -> Column:
    return F.coalesce(F.col(column).cast("string"), F.lit("<empty>"))


def split_feedback(feedback: DataFrame, served: DataFrame, *, source: str, run_id: str) -> FeedbackSplit:
    """Valid feedback and quarantine rows (reason from FEEDBACK_RULES, detail naming the column and value).

    A row is about a served list when its (run_id, user_id) got a list from ``served`` (recommendations) and
    its item was on that list. Nothing is dropped; ``run_id`` is the run doing the check (quarantine.run_id).
    """
    users = served.select(S.RUN_ID, S.USER_ID).distinct().withColumn("_user_served", F.lit(True))
    pairs = served.select(S.RUN_ID, S.USER_ID, S.ITEM_ID).distinct().withColumn("_item_served", F.lit(True))
    checked = (
        feedback.select(*FEEDBACK_COLUMNS)
        .join(users, [S.RUN_ID, S.USER_ID], "left")
        .join(pairs, [S.RUN_ID, S.USER_ID, S.ITEM_ID], "left")
    )
    run = _value(S.RUN_ID)
    reason = F.coalesce(
        F.when(
            ~F.coalesce(F.col(S.EVENT_TYPE).isin(*S.FEEDBACK_EVENT_TYPES), F.lit(False)),
            F.lit(BAD_EVENT_TYPE),
        ),
        F.when(F.col("_user_served").isNull(), F.lit(UNKNOWN_USER)),
        F.when(F.col("_item_served").isNull(), F.lit(UNSERVED_ITEM)),
    )
    detail = (
        F.when(
            F.col("reason") == BAD_EVENT_TYPE,
            F.concat(
                F.lit("event_type="),
                _value(S.EVENT_TYPE),
                F.lit(f" (expected one of {', '.join(S.FEEDBACK_EVENT_TYPES)})"),
            ),
        )
        .when(
            F.col("reason") == UNKNOWN_USER,
            F.concat(
                F.lit("user_id="), _value(S.USER_ID), F.lit(" (no list served by run "), run, F.lit(")")
            ),
        )
        .otherwise(
            F.concat(
                F.lit("item_id="),
                _value(S.ITEM_ID),
                F.lit(" (not in the list run "),
                run,
                F.lit(" served to user_id="),
                _value(S.USER_ID),
                F.lit(")"),
            )
        )
    )
    checked = checked.withColumn("reason", reason)
    valid = checked.where(F.col("reason").isNull()).select(*FEEDBACK_COLUMNS)
    quarantined = checked.where(F.col("reason").isNotNull()).select(
        F.lit(S.FEEDBACK_EVENTS).alias("table"),
        F.lit(source).alias(S.SOURCE),
        F.to_json(F.struct(*FEEDBACK_COLUMNS)).alias("raw"),
        F.col("reason"),
        detail.alias("detail"),
        F.lit(run_id).alias(S.RUN_ID),
    )
    return FeedbackSplit(valid, quarantined)
