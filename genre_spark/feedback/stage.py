"""The feedback step for the lists served as of T: purchases in ``[T, T + window)`` (and any incoming
feedback rows) -> ``feedback_events`` + ``quarantine``, then ``strategy_state``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings
from genre_spark.errors import AccountingError
from genre_spark.feedback.events import FEEDBACK_COLUMNS, feedback_from_purchases, split_feedback
from genre_spark.feedback.state import arm_outcomes, update_strategy_state
from genre_spark.storage import TableStore, WriteResult

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
        feedback = feedback.unionByName(incoming.select(*FEEDBACK_COLUMNS))
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
