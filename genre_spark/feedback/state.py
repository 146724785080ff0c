"""The strategy state: per (segment, context, strategy) decayed impressions and conversions and the
Beta posterior they give; what the chooser reads back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import DataFrame, Row, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings
from genre_spark.storage import TableStore

CONTEXT = "context"


_STATE_COLUMNS = [f.name for f in S.CONTRACTS[S.STRATEGY_STATE].fields]
_ARM = [S.SEGMENT_ID, S.STRATEGY_ID]


def arm_outcomes(feedback: DataFrame, served: DataFrame) -> DataFrame:
    """``(segment_id, strategy_id, impressions, conversions)`` from valid feedback and the served lists.

    The unit is a served item: it counts as an impression when it has an impression event and as a conversion
    when it also has a purchase event (clicks are kept in feedback_events but do not convert), so
    conversions <= impressions whatever duplicates the feedback holds.
    """
    keys = [S.RUN_ID, S.USER_ID, S.ITEM_ID]
    per_item = feedback.groupBy(*keys).agg(
        F.max((F.col(S.EVENT_TYPE) == S.IMPRESSION).cast("int")).alias("_seen"),
        F.max((F.col(S.EVENT_TYPE) == S.PURCHASE).cast("int")).alias("_bought"),
    )
    arms = served.select(*keys, S.SEGMENT_ID, S.STRATEGY_ID).dropDuplicates(keys)
    return (
        per_item.where(F.col("_seen") == 1)
        .join(arms, keys)
        .groupBy(*_ARM)
        .agg(F.count(F.lit(1)).alias("impressions"), F.sum("_bought").cast("long").alias("conversions"))
    )


def current_state(state: DataFrame) -> DataFrame:
    """The latest row per (segment, context, strategy) of the append-only ``strategy_state`` table."""
    latest = Window.partitionBy(S.SEGMENT_ID, CONTEXT, S.STRATEGY_ID).orderBy(
        F.col("updated_as_of").desc(), F.col(S.RUN_ID).desc()
    )
    return state.withColumn("_n", F.row_number().over(latest)).where(F.col("_n") == 1).drop("_n")


def update_strategy_state(
    previous: DataFrame | None,
    outcomes: DataFrame,
    settings: FeedbackSettings,
    *,
    context: str,
    as_of: dt.date,
    run_id: str,
) -> DataFrame:
    """The new ``strategy_state`` rows of ``context``: every arm of the previous state (its latest rows) and
    every arm in ``outcomes``, past evidence decayed once, new outcomes added (arms without new feedback
    decay too; new arms start from the prior). Rows of other contexts are untouched (append the result)."""
    spark = outcomes.sparkSession
    if previous is None:
        previous = spark.createDataFrame([], S.CONTRACTS[S.STRATEGY_STATE])
    prev = (
        current_state(previous)
        .where(F.col(CONTEXT) == context)
        .select(*_ARM, F.col("impressions").alias("_pi"), F.col("conversions").alias("_pc"))
        .alias("p")
    )
    new = outcomes.select(*_ARM, F.col("impressions").alias("_ni"), F.col("conversions").alias("_nc")).alias(
        "n"
    )
    same_arm = F.col(f"p.{S.SEGMENT_ID}").eqNullSafe(F.col(f"n.{S.SEGMENT_ID}")) & F.col(
        f"p.{S.STRATEGY_ID}"
    ).eqNullSafe(F.col(f"n.{S.STRATEGY_ID}"))
    decay = F.lit(float(settings.decay))
    impressions = decay * F.coalesce(F.col("_pi"), F.lit(0.0)) + F.coalesce(F.col("_ni"), F.lit(0.0))
    conversions = decay * F.coalesce(F.col("_pc"), F.lit(0.0)) + F.coalesce(F.col("_nc"), F.lit(0.0))
    merged = prev.join(new, same_arm, "full_outer").select(
        F.coalesce(f"p.{S.SEGMENT_ID}", f"n.{S.SEGMENT_ID}").cast("int").alias(S.SEGMENT_ID),
        F.lit(context).alias(CONTEXT),
        F.coalesce(f"p.{S.STRATEGY_ID}", f"n.{S.STRATEGY_ID}").alias(S.STRATEGY_ID),
        impressions.cast("double").alias("impressions"),
        conversions.cast("double").alias("conversions"),
    )
    return merged.select(
        S.SEGMENT_ID,
        CONTEXT,
        S.STRATEGY_ID,
        (F.lit(float(settings.prior_alpha)) + F.col("conversions")).alias("alpha"),
        (F.lit(float(settings.prior_beta)) + F.col("impressions") - F.col("conversions")).alias("beta"),
        "impressions",
        "conversions",
        F.lit(as_of).cast("date").alias("updated_as_of"),
        F.lit(run_id).alias(S.RUN_ID),
    )


@dataclass(frozen=True)
class Arm:
    segment_id: int
    strategy_id: str
    alpha: float
    beta: float


def arms_from_rows(rows: Iterable[Row]) -> list[Arm]:
    """Arms from collected ``strategy_state`` rows of one context (one row per segment x strategy)."""
    return [
        Arm(int(r[S.SEGMENT_ID]), str(r[S.STRATEGY_ID]), float(r["alpha"]), float(r["beta"])) for r in rows
    ]


def posterior_step(arm: Arm, impressions: float, conversions: float, settings: FeedbackSettings) -> Arm:
    """One update of one arm on the driver: the formula of :func:`update_strategy_state`."""
    alpha = settings.prior_alpha + settings.decay * (arm.alpha - settings.prior_alpha) + conversions
    beta = settings.prior_beta + settings.decay * (arm.beta - settings.prior_beta) + impressions - conversions
    return Arm(arm.segment_id, arm.strategy_id, alpha, beta)


def load_arms(store: TableStore, context: str, as_of: dt.date) -> list[Arm]:
    """The posteriors of ``context`` known on ``as_of`` (state rows updated on or before it; latest per arm).
    One row per segment x strategy reaches the driver; none before the first feedback."""
    if not store.exists(S.STRATEGY_STATE):
        return []
    known = store.read_table(S.STRATEGY_STATE).where(F.col("updated_as_of") <= F.lit(as_of))
    rows = current_state(known).where(F.col(CONTEXT) == context).collect()  # segments x strategies
    return arms_from_rows(rows)
