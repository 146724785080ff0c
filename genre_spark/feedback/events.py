"""Feedback events: served lists and purchases become impressions and purchases; feedback that is not about
a served list, arrives dated on or after the run, or was recorded before is quarantined with a rule id,
never dropped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.history import midnight

# quarantine rule ids, checked in this order (the first failed rule is the reason)
BAD_EVENT_TYPE = "bad_event_type"  # not one of impression, click, add_to_cart, purchase
NOT_YET = "after_run_date"  # the event happened on or after the run's date: a later run counts it
UNKNOWN_LIST = "unknown_list"  # no list of this run id (or as-of date) was served in the feedback window
UNKNOWN_USER = "unknown_user"  # the run served no list to this user
UNSERVED_ITEM = "unserved_item"  # the run served the user a list without this item
DUPLICATE = "duplicate_feedback"  # the same event (list, user, item, type, time) is already counted
FEEDBACK_RULES = (BAD_EVENT_TYPE, NOT_YET, UNKNOWN_LIST, UNKNOWN_USER, UNSERVED_ITEM, DUPLICATE)


EVENT_COLUMNS = [S.RUN_ID, S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.EVENT_TS]  # an event: also its identity


def feedback_from_purchases(
    served: DataFrame, events: DataFrame, window_days: int, until: dt.date
) -> DataFrame:
    """``feedback_events`` rows for the ``served`` recommendations (run_id, as_of, user_id, item_id, ...).

    An impression per served row, at its as-of date 00:00 UTC; a purchase per served (run, user, item) that
    the user bought in ``[as_of, as_of + window_days)`` and before ``until``, at the first such purchase.
    The lists are those of the ``window_days`` before ``until`` (the events are read from then on).
    """
    lists = served.select(S.RUN_ID, S.AS_OF, S.USER_ID, S.ITEM_ID)
    impressions = lists.select(
        S.RUN_ID,
        S.USER_ID,
        S.ITEM_ID,
        F.lit(S.IMPRESSION).alias(S.EVENT_TYPE),
        F.col(S.AS_OF).cast("timestamp"),
    ).withColumnRenamed(S.AS_OF, S.EVENT_TS)
    # a purchase that counts is before `until` and within window_days of a list, so after this
    bought = events.where(
        (F.col(S.EVENT_TYPE) == S.PURCHASE)
        & (F.col(S.EVENT_TS) >= midnight(until - dt.timedelta(days=window_days)))
        & (F.col(S.EVENT_TS) < midnight(until))
    ).select(S.USER_ID, S.ITEM_ID, S.EVENT_TS)
    in_window = (F.col(S.EVENT_TS) >= F.col(S.AS_OF).cast("timestamp")) & (
        F.col(S.EVENT_TS) < F.date_add(S.AS_OF, window_days).cast("timestamp")
    )
    purchases = (
        lists.distinct()
        .join(bought, [S.USER_ID, S.ITEM_ID])
        .where(in_window)
        .groupBy(S.RUN_ID, S.USER_ID, S.ITEM_ID)
        .agg(F.min(S.EVENT_TS).alias(S.EVENT_TS))
        .select(S.RUN_ID, S.USER_ID, S.ITEM_ID, F.lit(S.PURCHASE).alias(S.EVENT_TYPE), S.EVENT_TS)
    )
    return impressions.unionByName(purchases)


@dataclass(frozen=True)
class FeedbackSplit:
    valid: DataFrame  # feedback_events contract
    quarantined: DataFrame  # quarantine contract


def _value(column: str) -> Column:
    return F.coalesce(F.col(column).cast("string"), F.lit("<empty>"))


def _detail(reason: str, *parts: str | Column) -> tuple[str, Column]:
    return reason, F.concat(*[F.lit(p) if isinstance(p, str) else p for p in parts])


def split_feedback(
    feedback: DataFrame,
    served: DataFrame,
    *,
    source: str | Column,
    raw: Column | None = None,
    run_id: str,
    until: dt.date | None = None,
    recorded: DataFrame | None = None,
) -> FeedbackSplit:
    """Valid feedback and quarantine rows (reason from FEEDBACK_RULES, detail naming the column and value).

    A row is about a served list when its (run_id, user_id) got a list from ``served`` (recommendations) and
    its item was on that list. With ``until``, rows at or after its midnight wait for a later run; with
    ``recorded`` (``feedback_events`` so far), an event already recorded is a duplicate, and so is any copy of
    an event after its first in ``feedback``. ``source`` and ``raw`` fill quarantine.source and .raw (default
    raw: the row as JSON). Nothing is dropped; ``run_id`` is the run doing the check (quarantine.run_id,
    feedback_events.recorded_run_id).
    """
    key = EVENT_COLUMNS
    lists = served.select(S.RUN_ID).distinct().withColumn("_list_served", F.lit(True))
    users = served.select(S.RUN_ID, S.USER_ID).distinct().withColumn("_user_served", F.lit(True))
    pairs = served.select(S.RUN_ID, S.USER_ID, S.ITEM_ID).distinct().withColumn("_item_served", F.lit(True))
    checked = (
        feedback.withColumns(
            {
                "_source": source if isinstance(source, Column) else F.lit(source),
                "_raw": raw if raw is not None else F.to_json(F.struct(*EVENT_COLUMNS)),
            }
        )
        .join(lists, [S.RUN_ID], "left")
        .join(users, [S.RUN_ID, S.USER_ID], "left")
        .join(pairs, [S.RUN_ID, S.USER_ID, S.ITEM_ID], "left")
    )
    if recorded is not None:
        known = recorded.select(*key).distinct().withColumn("_recorded", F.lit(True))
        checked = checked.join(known, key, "left")
    else:
        checked = checked.withColumn("_recorded", F.lit(None).cast("boolean"))
    copies = Window.partitionBy(*key).orderBy("_raw")
    checked = checked.withColumn("_copy", F.row_number().over(copies))
    due = F.lit(True) if until is None else F.col(S.EVENT_TS) < midnight(until)
    run, user, item = _value(S.RUN_ID), _value(S.USER_ID), _value(S.ITEM_ID)
    rules = [
        (
            ~F.coalesce(F.col(S.EVENT_TYPE).isin(*S.FEEDBACK_EVENT_TYPES), F.lit(False)),
            _detail(
                BAD_EVENT_TYPE,
                "event_type=",
                _value(S.EVENT_TYPE),
                f" (expected one of {', '.join(S.FEEDBACK_EVENT_TYPES)})",
            ),
        ),
        (~due, _detail(NOT_YET, "event_ts=", _value(S.EVENT_TS), f" (on or after the run's date {until})")),
        (
            F.col("_list_served").isNull(),
            _detail(UNKNOWN_LIST, "run_id=", run, " (no such list served in the feedback window)"),
        ),
        (
            F.col("_user_served").isNull(),
            _detail(UNKNOWN_USER, "user_id=", user, " (no list served by run ", run, ")"),
        ),
        (
            F.col("_item_served").isNull(),
            _detail(
                UNSERVED_ITEM,
                "item_id=",
                item,
                " (not in the list run ",
                run,
                " served to user_id=",
                user,
                ")",
            ),
        ),
        (
            F.col("_recorded").isNotNull() | (F.col("_copy") > 1),
            _detail(
                DUPLICATE,
                "the ",
                _value(S.EVENT_TYPE),
                " of item_id=",
                item,
                " by user_id=",
                user,
                " at ",
                _value(S.EVENT_TS),
                " (list of run ",
                run,
                ") is already counted",
            ),
        ),
    ]
    checked = checked.withColumns(
        {
            "reason": F.coalesce(*[F.when(fails, F.lit(reason)) for fails, (reason, _) in rules]),
            "detail": F.coalesce(*[F.when(fails, detail) for fails, (_, detail) in rules]),
        }
    )
    valid = checked.where(F.col("reason").isNull()).select(
        *EVENT_COLUMNS, F.col("_source").alias(S.SOURCE), F.lit(run_id).alias(S.RECORDED_RUN_ID)
    )
    quarantined = checked.where(F.col("reason").isNotNull()).select(
        F.lit(S.FEEDBACK_EVENTS).alias("table"),
        F.col("_source").alias(S.SOURCE),
        F.col("_raw").alias("raw"),
        "reason",
        "detail",
        F.lit(run_id).alias(S.RUN_ID),
    )
    return FeedbackSplit(valid, quarantined)
