"""The feedback stage of a run as of T: the feedback known before T on the lists served in the
``feedback.window_days`` days before T -> ``feedback_events`` + ``quarantine``, then ``strategy_state``
(which the ranking of T reads when ``feedback.adaptive`` is on).

Feedback comes from the configured serving log (``feedback.source``: impressions, clicks, add-to-carts,
purchases, each naming its list by run id or as-of date) or, without one, from the events: an impression
per served item and a purchase where the user bought it within the window. Each event counts once: an
event already recorded by an earlier run is quarantined as a duplicate (a derived one is simply not derived
again), an event dated on or after T is quarantined for this run (``after_run_date``). A log file is read
whole every run, so such an event counts at a later one; the files of a log folder are read once each (as
ingest reads its folder sources), so a folder's files should hold the events before the run that reads them,
as a nightly export does. Every write is idempotent per run id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings
from genre_spark.errors import AccountingError
from genre_spark.feedback.chooser import context_key
from genre_spark.feedback.events import EVENT_COLUMNS, feedback_from_purchases, split_feedback
from genre_spark.feedback.state import CONTEXT, arm_outcomes, load_arms, state_rows, update_arms
from genre_spark.ingest import rules
from genre_spark.ingest.sources import read_source
from genre_spark.ingest.stage import ingested_files, unread_files
from genre_spark.storage import TableStore, WriteResult, conform_to_contract
from genre_spark.strategy import Context

STAGE = "feedback"  # the writing stage of this step's writes (app-transaction ids)
PURCHASES_SOURCE = "purchases"  # source of feedback derived from the events' purchases
LOG_SOURCE = "feedback.source"  # the serving log's rows' source (feedback_events, quarantine, ingested_files)


@dataclass(frozen=True)
class FeedbackReport:
    as_of: dt.date  # feedback before this date, on the lists of the window before it
    lists_from: dt.date
    served_dates: int  # dates of the window with lists
    feedback_in: int  # rows checked: the serving log's, or the newly derived ones
    valid: int
    quarantined: int
    arms: int  # strategy_state rows written (segment x context x strategy with new evidence)
    writes: tuple[WriteResult, ...]

    def format(self) -> str:
        return (
            f"feedback before {self.as_of} on the lists of {self.lists_from}.. ({self.served_dates} dates): "
            f"{self.feedback_in:,} events in, {self.valid:,} to {S.FEEDBACK_EVENTS}, "
            f"{self.quarantined:,} quarantined; {self.arms} arms updated in {S.STRATEGY_STATE}"
        )


def served_lists(store: TableStore, start: dt.date, end: dt.date, hour_band: str | None) -> DataFrame:
    """The ``recommendations`` of ``[start, end)`` with each list's arm: the user's segment label on the
    list's date (``user_segments``) and the context the list was served in (its day; ``hour_band``: the
    band of this run, as a schedule serves at one hour)."""
    spark = store.spark
    if not store.exists(S.RECOMMENDATIONS):
        recs = spark.createDataFrame([], S.CONTRACTS[S.RECOMMENDATIONS])
    else:
        in_window = (F.col(S.AS_OF) >= F.lit(start)) & (F.col(S.AS_OF) < F.lit(end))
        recs = store.read_table(S.RECOMMENDATIONS).where(in_window)
    days = [r[0] for r in recs.select(S.AS_OF).distinct().collect()]  # at most window_days rows
    contexts = [(F.lit(d), F.lit(context_key(Context(d, hour_band)))) for d in days]
    context = F.element_at(F.create_map(*itertools.chain(*contexts)), F.col(S.AS_OF)) if days else F.lit(None)
    if days and store.exists(S.USER_SEGMENTS):
        labels = store.read_table(S.USER_SEGMENTS).where(F.col(S.AS_OF).isin(days))
        recs = recs.join(labels.select(S.AS_OF, S.USER_ID, S.SEGMENT_LABEL), [S.AS_OF, S.USER_ID], "left")
    else:
        recs = recs.withColumn(S.SEGMENT_LABEL, F.lit(None).cast("string"))
    fallback = F.concat(F.lit("segment "), F.col(S.SEGMENT_ID).cast("string"))
    return recs.withColumns(
        {S.SEGMENT_LABEL: F.coalesce(S.SEGMENT_LABEL, fallback), CONTEXT: context.cast("string")}
    )


def _serving_log(
    store: TableStore,
    settings: FeedbackSettings,
    served: DataFrame,
    files: list[str] | None,
    run_id: str,
    fold_item_case: bool,
) -> tuple[DataFrame, DataFrame]:
    """The serving log's rows (``files`` of a folder, else all) that pass the row rules (event columns +
    ``_source``/``_raw``; a list named by its date gets the run id that served that date) and the
    ``quarantine`` rows of those that do not."""
    assert settings.source is not None
    source = settings.source
    raw = read_source(store.spark, LOG_SOURCE, source, files)
    classified = rules.classify(
        rules.parse_feedback(raw, source, LOG_SOURCE, fold_item_case),
        rules.feedback_rules(source, len(raw.columns) - 1),
    )
    runs = served.select(S.AS_OF, F.col(S.RUN_ID).alias("_served_run")).distinct()
    good = (
        classified.where(F.col(rules.REASON).isNull())
        .join(runs, S.AS_OF, "left")
        .withColumn(
            S.RUN_ID,  # a date that served no list stays named by it (it is quarantined as unknown_list)
            F.coalesce(
                S.RUN_ID,
                "_served_run",
                F.concat(F.lit("<list of "), F.col(S.AS_OF).cast("string"), F.lit(">")),
            ),
        )
        .select(*EVENT_COLUMNS, F.col(rules.SOURCE_COL).alias("_source"), F.col(rules.RAW).alias("_raw"))
    )
    return good, rules.quarantined(classified, S.FEEDBACK_EVENTS, run_id)


def run_feedback(
    store: TableStore,
    settings: FeedbackSettings,
    as_of: dt.date,
    run_id: str,
    *,
    hour_band: str | None = None,
    fold_item_case: bool = True,
) -> FeedbackReport:
    """The feedback stage as of ``as_of`` (see the module docstring). Nothing to do (no log, no lists in the
    window) writes nothing."""
    start = as_of - dt.timedelta(days=settings.window_days)
    nothing = FeedbackReport(as_of, start, 0, 0, 0, 0, 0, ())
    files = None  # a folder log: only the files no earlier run read (like ingest's folder sources)
    if settings.source is not None:
        files = unread_files(store.spark, store, [(LOG_SOURCE, settings.source)], run_id).get(LOG_SOURCE)
        if files == []:
            return nothing
    served = served_lists(store, start, as_of, hour_band).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_dates = served.select(S.AS_OF).distinct().count()
        if settings.source is None and n_dates == 0:
            return nothing
        recorded = None
        if store.exists(S.FEEDBACK_EVENTS):  # what earlier runs recorded (a rerun must not see its own rows)
            recorded = conform_to_contract(store.read_table(S.FEEDBACK_EVENTS), S.FEEDBACK_EVENTS)
            recorded = recorded.where(F.col(S.RECORDED_RUN_ID) != F.lit(run_id))
        if settings.source is None:
            incoming = feedback_from_purchases(
                served, store.read_table(S.EVENTS), settings.window_days, as_of
            )
            if recorded is not None:
                incoming = incoming.join(recorded.select(*EVENT_COLUMNS), EVENT_COLUMNS, "left_anti")
            incoming = incoming.withColumns(
                {"_source": F.lit(PURCHASES_SOURCE), "_raw": F.to_json(F.struct(*EVENT_COLUMNS))}
            )
            rejected = None
        else:
            incoming, rejected = _serving_log(store, settings, served, files, run_id, fold_item_case)
        report = _record(store, settings, served, incoming, rejected, recorded, as_of, start, n_dates, run_id)
    finally:
        served.unpersist()
    if files:  # only once every row is accounted for: a failed run reads them again
        read = ingested_files(store.spark, {LOG_SOURCE: files}, run_id)
        wrote = store.write_table(read, S.INGESTED_FILES, mode="append", run_id=run_id, stage=STAGE)
        report = dataclasses.replace(report, writes=(*report.writes, wrote))
    return report


def _rows(result: WriteResult, df: DataFrame) -> int:
    return result.rows if result.rows is not None and not result.skipped else df.count()


def _record(
    store: TableStore,
    settings: FeedbackSettings,
    served: DataFrame,
    incoming: DataFrame,
    rejected: DataFrame | None,
    recorded: DataFrame | None,
    as_of: dt.date,
    start: dt.date,
    n_dates: int,
    run_id: str,
) -> FeedbackReport:
    """Split, write and account for the incoming feedback, then update the state of the arms it touches."""
    incoming = incoming.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        split = split_feedback(
            incoming,
            served,
            source=F.col("_source"),
            raw=F.col("_raw"),
            run_id=run_id,
            until=as_of,
            recorded=recorded,
        )
        bad = split.quarantined if rejected is None else split.quarantined.unionByName(rejected)
        wrote_valid = store.write_table(
            split.valid, S.FEEDBACK_EVENTS, mode="append", run_id=run_id, stage=STAGE
        )
        wrote_bad = store.write_table(bad, S.QUARANTINE, mode="append", run_id=run_id, stage=STAGE)
        total = incoming.count() + (0 if rejected is None else rejected.count())
        valid, quarantined = _rows(wrote_valid, split.valid), _rows(wrote_bad, bad)
        if total != valid + quarantined:
            raise AccountingError(
                f"feedback before {as_of}: {total:,} rows in, {valid:,} valid + {quarantined:,} quarantined"
            )
        outcomes = [tuple(r) for r in arm_outcomes(split.valid, recorded, served).collect()]  # one per arm
    finally:
        incoming.unpersist()
    known = load_arms(store, as_of, settings, exclude_run=run_id)
    updated = update_arms(known, outcomes, as_of)
    writes = [wrote_valid, wrote_bad]
    if updated:
        state = state_rows(store.spark, updated, known, settings, run_id)
        writes.append(store.write_table(state, S.STRATEGY_STATE, mode="append", run_id=run_id, stage=STAGE))
    return FeedbackReport(as_of, start, n_dates, total, valid, quarantined, len(updated), tuple(writes))
