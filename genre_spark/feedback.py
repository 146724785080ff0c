"""Feedback: served lists and real purchases become feedback events, which update a Beta-Bernoulli posterior
per (segment, context, strategy), and Thompson sampling picks the next strategy per segment (issue 6).

- :func:`feedback_from_purchases`: one ``impression`` per served item, one ``purchase`` where the user bought
  that item in the feedback window (Spark built-ins).
- :func:`split_feedback`: feedback about users or items a run never served is quarantined (``quarantine``
  contract, rule ids below), never dropped: ``count(in) == count(valid) + count(quarantined)``.
- :func:`arm_outcomes` and :func:`update_strategy_state`: per (segment, strategy), impressions are the served
  items with an impression event and conversions those of them also bought; the state keeps decayed sums
  (``impressions' = decay x impressions + new``, same for conversions) and
  ``alpha = prior_alpha + conversions``, ``beta = prior_beta + impressions - conversions``.
- :func:`thompson_select`: on the driver, over one row per segment x strategy: with probability
  ``floor x n`` a uniform pick among the n allowed strategies, else the strategy with the highest draw from
  its posterior; so every allowed strategy is picked with probability >= ``exploration_floor``.
- :func:`adaptive_chooser`: the ranking's :data:`~genre_spark.ranking.Chooser` of the adaptive policy: per
  segment, :func:`thompson_select` over the strategies the book allows it (``adaptive:`` in strategies.yaml).
- :func:`run_feedback`: the feedback step for the lists served as of T: purchases in ``[T, T + window)``
  (and any incoming feedback rows) -> ``feedback_events`` + ``quarantine``, then ``strategy_state``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings
from genre_spark.errors import AccountingError, ConfigError
from genre_spark.ranking import Chooser
from genre_spark.storage import TableStore, WriteResult
from genre_spark.strategy import Context, StrategyBook, allowed_strategies

CONTEXT = "context"
# quarantine rule ids, checked in this order (the first failed rule is the reason)
BAD_EVENT_TYPE = "bad_event_type"  # not one of impression, click, purchase
UNKNOWN_USER = "unknown_user"  # the run served no list to this user
UNSERVED_ITEM = "unserved_item"  # the run served the user a list without this item
FEEDBACK_RULES = (BAD_EVENT_TYPE, UNKNOWN_USER, UNSERVED_ITEM)

_FEEDBACK_COLUMNS = [f.name for f in S.CONTRACTS[S.FEEDBACK_EVENTS].fields]
_STATE_COLUMNS = [f.name for f in S.CONTRACTS[S.STRATEGY_STATE].fields]
_ARM = [S.SEGMENT_ID, S.STRATEGY_ID]


def context_key(ctx: Context) -> str:
    """The state's context of a run: ``weekday/morning``, ``weekend/any`` (no --context-hour)."""
    return f"{ctx.day}/{ctx.hour_band or 'any'}"


def _midnight(day: dt.date) -> Column:
    return F.lit(day.isoformat()).cast("timestamp")


# --------------------------------------------------------------------------- events


def feedback_from_purchases(served: DataFrame, events: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """``feedback_events`` rows for the ``served`` recommendations (run_id, user_id, item_id, ...).

    An impression per served row, at ``start`` 00:00 UTC; a purchase per served (run, user, item) that the
    user bought in ``[start, end)``, at the first such purchase.
    """
    bought = (
        events.where(
            (F.col(S.EVENT_TYPE) == S.PURCHASE)
            & (F.col(S.EVENT_TS) >= _midnight(start))
            & (F.col(S.EVENT_TS) < _midnight(end))
        )
        .groupBy(S.USER_ID, S.ITEM_ID)
        .agg(F.min(S.EVENT_TS).alias(S.EVENT_TS))
    )
    impressions = served.select(
        S.RUN_ID,
        S.USER_ID,
        S.ITEM_ID,
        F.lit(S.IMPRESSION).alias(S.EVENT_TYPE),
        _midnight(start).alias(S.EVENT_TS),
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
        feedback.select(*_FEEDBACK_COLUMNS)
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
    valid = checked.where(F.col("reason").isNull()).select(*_FEEDBACK_COLUMNS)
    quarantined = checked.where(F.col("reason").isNotNull()).select(
        F.lit(S.FEEDBACK_EVENTS).alias("table"),
        F.lit(source).alias(S.SOURCE),
        F.to_json(F.struct(*_FEEDBACK_COLUMNS)).alias("raw"),
        F.col("reason"),
        detail.alias("detail"),
        F.lit(run_id).alias(S.RUN_ID),
    )
    return FeedbackSplit(valid, quarantined)


# --------------------------------------------------------------------------- posteriors


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


# --------------------------------------------------------------------------- selection (driver)


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


def selection_rng(settings: FeedbackSettings, as_of: dt.date) -> np.random.Generator:
    """The seeded generator of one run's selection (same config and date, same picks)."""
    return np.random.default_rng([settings.seed, as_of.toordinal()])


def thompson_select(
    arms: Iterable[Arm],
    allowed: Mapping[int, Sequence[str]],
    settings: FeedbackSettings,
    rng: np.random.Generator,
) -> dict[int, str]:
    """The strategy per segment: a uniform pick with probability ``min(1, floor x n)`` among the segment's n
    allowed strategies, else the one with the highest posterior draw (ties: first listed). Allowed strategies
    without a state row draw from the prior. Segments are visited in id order, so a seeded ``rng`` replays."""
    posterior = {(a.segment_id, a.strategy_id): (a.alpha, a.beta) for a in arms}
    prior = (settings.prior_alpha, settings.prior_beta)
    picks: dict[int, str] = {}
    for segment in sorted(allowed):
        names = list(dict.fromkeys(allowed[segment]))
        if not names:
            raise ConfigError(f"segment {segment} allows no strategy")
        explore = rng.random() < min(1.0, settings.exploration_floor * len(names))
        params = np.array([posterior.get((segment, n), prior) for n in names], dtype=float)
        draws = rng.beta(params[:, 0], params[:, 1])
        picks[segment] = names[int(rng.integers(len(names)))] if explore else names[int(np.argmax(draws))]
    return picks


def segment_rng(settings: FeedbackSettings, as_of: dt.date, segment_id: int) -> np.random.Generator:
    """The seeded generator of one segment's pick (independent of the order segments are visited in)."""
    return np.random.default_rng([settings.seed, as_of.toordinal(), segment_id])


def adaptive_chooser(
    book: StrategyBook, arms: Iterable[Arm], settings: FeedbackSettings, as_of: dt.date
) -> Chooser:
    """Thompson sampling per segment among its allowed strategies (:func:`~genre_spark.strategy.
    allowed_strategies`), from ``arms`` (one context's posteriors; missing arms draw from the prior)."""
    known = list(arms)

    def choose(segment_id: int, segment_label: str) -> str:
        allowed = {segment_id: allowed_strategies(book, segment_id, segment_label)}
        return thompson_select(known, allowed, settings, segment_rng(settings, as_of, segment_id))[segment_id]

    return choose


def load_arms(store: TableStore, context: str, as_of: dt.date) -> list[Arm]:
    """The posteriors of ``context`` known on ``as_of`` (state rows updated on or before it; latest per arm).
    One row per segment x strategy reaches the driver; none before the first feedback."""
    if not store.exists(S.STRATEGY_STATE):
        return []
    known = store.read_table(S.STRATEGY_STATE).where(F.col("updated_as_of") <= F.lit(as_of))
    rows = current_state(known).where(F.col(CONTEXT) == context).collect()  # segments x strategies
    return arms_from_rows(rows)


def adaptive_chooser_from_store(
    store: TableStore, book: StrategyBook, settings: FeedbackSettings, ctx: Context
) -> Chooser:
    """The adaptive chooser of a ranking run in ``ctx``, from ``strategy_state`` as of ``ctx.as_of``."""
    return adaptive_chooser(book, load_arms(store, context_key(ctx), ctx.as_of), settings, ctx.as_of)


# --------------------------------------------------------------------------- the feedback step

STAGE = "feedback"  # the writing stage of this step's writes (app-transaction ids)
PURCHASES_SOURCE = "purchases"  # quarantine.source of feedback derived from the events' purchases


@dataclass(frozen=True)
class FeedbackReport:
    served_as_of: dt.date
    window_end: dt.date  # exclusive
    feedback_in: int  # rows checked: derived from purchases + incoming
    valid: int
    quarantined: int
    arms: int  # strategy_state rows written (segment x strategy of this context)
    writes: tuple[WriteResult, ...]

    def format(self) -> str:
        return (
            f"feedback on the lists of {self.served_as_of} (purchases until {self.window_end}): "
            f"{self.feedback_in:,} events in, {self.valid:,} to {S.FEEDBACK_EVENTS}, "
            f"{self.quarantined:,} quarantined; {self.arms} arms in {S.STRATEGY_STATE}"
        )


def _rows(result: WriteResult, df: DataFrame) -> int:
    return result.rows if result.rows is not None and not result.skipped else df.count()


def run_feedback(
    store: TableStore,
    settings: FeedbackSettings,
    served_as_of: dt.date,
    window_days: int,
    run_id: str,
    *,
    context: str,
    incoming: DataFrame | None = None,
) -> FeedbackReport:
    """Feedback on the ``recommendations`` of ``served_as_of``: an impression per served item and a purchase
    where the user bought it in ``[served_as_of, served_as_of + window_days)``, plus ``incoming`` feedback
    rows (``feedback_events`` contract, e.g. clicks from a front end) checked the same way. Valid rows are
    appended to ``feedback_events``, the others to ``quarantine`` with their reason (never dropped); the
    served items' outcomes update ``strategy_state`` in ``context`` (the context the lists were served in).
    Every write is idempotent per ``run_id`` (a rerun commits nothing)."""
    served = store.read_table(S.RECOMMENDATIONS).where(F.col(S.AS_OF) == F.lit(served_as_of))
    end = served_as_of + dt.timedelta(days=window_days)
    feedback = feedback_from_purchases(served, store.read_table(S.EVENTS), served_as_of, end)
    if incoming is not None:
        feedback = feedback.unionByName(incoming.select(*_FEEDBACK_COLUMNS))
    feedback = feedback.persist()
    try:
        split = split_feedback(feedback, served, source=PURCHASES_SOURCE, run_id=run_id)
        wrote_valid = store.write_table(
            split.valid, S.FEEDBACK_EVENTS, mode="append", run_id=run_id, stage=STAGE
        )
        wrote_bad = store.write_table(
            split.quarantined, S.QUARANTINE, mode="append", run_id=run_id, stage=STAGE
        )
        total, valid, bad = (
            feedback.count(),
            _rows(wrote_valid, split.valid),
            _rows(wrote_bad, split.quarantined),
        )
        if total != valid + bad:
            raise AccountingError(
                f"feedback of {served_as_of}: {total:,} rows in, {valid:,} valid + {bad:,} quarantined"
            )
        previous = store.read_table(S.STRATEGY_STATE) if store.exists(S.STRATEGY_STATE) else None
        state = update_strategy_state(
            previous, arm_outcomes(split.valid, served), settings, context=context, as_of=end, run_id=run_id
        )
        wrote_state = store.write_table(state, S.STRATEGY_STATE, mode="append", run_id=run_id, stage=STAGE)
    finally:
        feedback.unpersist()
    return FeedbackReport(
        served_as_of, end, total, valid, bad, _rows(wrote_state, state), (wrote_valid, wrote_bad, wrote_state)
    )
