"""The strategy state: per (segment label, context, strategy) the impressions and conversions seen so far,
decayed by their age (``feedback.half_life_days``), and the Beta posterior they give.

An arm's prior mean is its segment's base rate times its strategy's lift over the segments that tried it
(empirical Bayes over the context's arms, each level weighing ``feedback.prior_strength`` served items): a
strategy a segment never tried starts near what it does elsewhere relative to that segment's conversion,
not at a guess. The state is keyed by
the segment's label (stable when a refit renumbers the segments), and the chooser reads it on the driver
(one row per segment x context x strategy).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings
from genre_spark.storage import TableStore, conform_to_contract

CONTEXT = "context"
ARM_KEY = [S.SEGMENT_LABEL, CONTEXT, S.STRATEGY_ID]


@dataclass(frozen=True)
class Arm:
    segment: str  # the segment's label
    context: str  # "<weekday|weekend>/<hour band|any>" of the served lists
    strategy_id: str
    impressions: float  # served items with an impression, decayed to updated_as_of
    conversions: float  # of them, bought
    updated_as_of: dt.date

    def decayed(self, day: dt.date, half_life_days: float) -> Arm:
        """The evidence as it weighs on ``day`` (halved every ``half_life_days``)."""
        factor = 0.5 ** (max((day - self.updated_as_of).days, 0) / half_life_days)
        return replace(
            self,
            impressions=self.impressions * factor,
            conversions=self.conversions * factor,
            updated_as_of=day,
        )


def prior_mean(arms: Iterable[Arm], segment: str, strategy: str, settings: FeedbackSettings) -> float:
    """The conversion an arm is expected to have before its own evidence: its segment's base rate times its
    strategy's lift (empirical Bayes over ``arms``, one context's).

    The base rate is the segment's pooled conversion, shrunk toward the context's, itself shrunk toward
    ``prior_mean``; the lift is the strategy's conversions over what its segments' base rates predict for
    its impressions, shrunk toward 1. Every pool weighs ``prior_strength`` served items against its evidence,
    so a strategy that converts half as well in every other segment starts at half in this one too.
    """
    arms = list(arms)
    strength = settings.prior_strength

    def pooled(pool: list[Arm], toward: float) -> float:
        return (sum(a.conversions for a in pool) + strength * toward) / (
            sum(a.impressions for a in pool) + strength
        )

    context = pooled(arms, settings.prior_mean)
    base = {
        s: pooled([a for a in arms if a.segment == s], context) for s in {segment, *(a.segment for a in arms)}
    }
    mine = [a for a in arms if a.strategy_id == strategy]
    expected = sum(a.impressions * base[a.segment] for a in mine)
    lift = (sum(a.conversions for a in mine) + strength * context) / (expected + strength * context)
    return min(base[segment] * lift, 0.5)


def beta_params(
    impressions: float, conversions: float, mean: float, settings: FeedbackSettings
) -> tuple[float, float]:
    """Beta(alpha, beta) of an arm: the prior (``mean`` x strength) plus its evidence."""
    strength = settings.prior_strength
    return mean * strength + conversions, (1 - mean) * strength + impressions - conversions


def arm_outcomes(new: DataFrame, recorded: DataFrame | None, served: DataFrame) -> DataFrame:
    """``(segment_label, context, strategy_id, impressions, conversions)`` that ``new`` valid feedback adds
    to what ``recorded`` (earlier ``feedback_events``) already counted.

    The unit is a served item (run, user, item): an impression once it has an impression event, a conversion
    once it also has a purchase (clicks and add-to-carts are recorded but do not convert); each counts in the
    update where it first holds, so a late purchase of an item shown before converts then, and duplicates
    count nothing. ``served``: run_id, user_id, item_id and the arm columns.
    """
    keys = [S.RUN_ID, S.USER_ID, S.ITEM_ID]
    rows = new.select(*keys, S.EVENT_TYPE, F.lit(False).alias("_old"))
    if recorded is not None:
        runs = served.select(S.RUN_ID).distinct()
        rows = rows.unionByName(
            recorded.join(runs, S.RUN_ID, "left_semi").select(*keys, S.EVENT_TYPE, F.lit(True).alias("_old"))
        )
    seen, bought = F.col(S.EVENT_TYPE) == S.IMPRESSION, F.col(S.EVENT_TYPE) == S.PURCHASE

    def flag(condition: F.Column) -> F.Column:
        return F.max(condition.cast("int"))

    per_item = rows.groupBy(*keys).agg(
        flag(seen & F.col("_old")).alias("_seen_before"),
        flag(seen).alias("_seen"),
        flag(bought & F.col("_old")).alias("_bought_before"),
        flag(bought).alias("_bought"),
    )
    shown = F.col("_seen") - F.col("_seen_before")
    converted = F.col("_seen") * F.col("_bought") - F.col("_seen_before") * F.col("_bought_before")
    arms = served.select(*keys, *ARM_KEY).dropDuplicates(keys)
    return (
        per_item.join(arms, keys)
        .groupBy(*ARM_KEY)
        .agg(
            F.sum(shown).cast("double").alias("impressions"),
            F.sum(converted).cast("double").alias("conversions"),
        )
        .where((F.col("impressions") > 0) | (F.col("conversions") > 0))
    )


def current_state(state: DataFrame) -> DataFrame:
    """The latest row per (segment label, context, strategy) of the append-only ``strategy_state`` table."""
    latest = Window.partitionBy(*ARM_KEY).orderBy(F.col("updated_as_of").desc(), F.col(S.RUN_ID).desc())
    return state.withColumn("_n", F.row_number().over(latest)).where(F.col("_n") == 1).drop("_n")


def load_arms(
    store: TableStore, as_of: dt.date, settings: FeedbackSettings, *, exclude_run: str = ""
) -> list[Arm]:
    """Every arm known on ``as_of`` (state rows updated on or before it, latest per arm), decayed to it;
    rows of ``exclude_run`` are left out (a rerun of a run must not see its own update). One row per segment
    x context x strategy reaches the driver; none before the first feedback."""
    if not store.exists(S.STRATEGY_STATE):
        return []
    state = conform_to_contract(
        store.read_table(S.STRATEGY_STATE), S.STRATEGY_STATE
    )  # an older shape: exit 4
    known = state.where((F.col("updated_as_of") <= F.lit(as_of)) & (F.col(S.RUN_ID) != F.lit(exclude_run)))
    rows = current_state(known).collect()  # segments x contexts x strategies
    arms = [
        Arm(r[S.SEGMENT_LABEL], r[CONTEXT], r[S.STRATEGY_ID], r.impressions, r.conversions, r.updated_as_of)
        for r in rows
    ]
    return [a.decayed(as_of, settings.half_life_days) for a in arms]


def update_arms(
    known: Sequence[Arm], outcomes: Iterable[tuple[str, str, str, float, float]], as_of: dt.date
) -> list[Arm]:
    """The arms ``outcomes`` (segment, context, strategy, impressions, conversions) touch, with their new
    evidence added to what ``known`` (decayed to ``as_of``) held; new arms start from none."""
    by_key = {(a.segment, a.context, a.strategy_id): a for a in known}
    updated = []
    for segment, context, strategy, impressions, conversions in outcomes:
        old = by_key.get((segment, context, strategy), Arm(segment, context, strategy, 0.0, 0.0, as_of))
        shown = old.impressions + impressions
        # a late purchase converts an impression that has decayed since: never more conversions than shown
        bought = min(old.conversions + conversions, shown)
        updated.append(Arm(segment, context, strategy, shown, bought, as_of))
    return updated


def state_rows(
    spark: SparkSession, updated: Sequence[Arm], known: Sequence[Arm], settings: FeedbackSettings, run_id: str
) -> DataFrame:
    """``strategy_state`` rows of the ``updated`` arms, their posteriors with priors pooled from every arm
    (``known`` overridden by ``updated``) of the same context."""
    merged = {(a.segment, a.context, a.strategy_id): a for a in [*known, *updated]}.values()
    rows = []
    for arm in updated:
        mean = prior_mean(
            (a for a in merged if a.context == arm.context), arm.segment, arm.strategy_id, settings
        )
        alpha, beta = beta_params(arm.impressions, arm.conversions, mean, settings)
        rows.append(
            (
                arm.segment,
                arm.context,
                arm.strategy_id,
                alpha,
                beta,
                arm.impressions,
                arm.conversions,
                arm.updated_as_of,
                run_id,
            )
        )
    return spark.createDataFrame(rows, S.CONTRACTS[S.STRATEGY_STATE])
