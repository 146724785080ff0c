"""Scheduled refresh: what happens after a run's stages, backfills over a date range, the latest pointer.

After the stages of a run (``finish_run``, called by ``genre-spark run``, ``backfill`` and the notebooks):

1. retention: ``recommendations`` partitions older than ``as_of - storage.retention_days`` are deleted
   in one Delta commit (nothing is committed when none is that old);
2. the ``recommendations_latest`` pointer (one row: as_of, run_id, table version) moves to this run when
   it wrote recommendations for a date at least as new as the pointer's; consumers read
   :func:`read_latest_recommendations`;
3. one row in ``runs`` records the completed run (run id, as-of, stages). ``backfill`` skips dates whose
   run is recorded there with every requested stage, so a rerun of a backfill commits nothing;
4. the HTML run report (``genre_spark/report.py``) under ``<warehouse>/_reports/<run id>/``.

Every write goes through ``TableStore.write_table`` with the run id: retried runs stay idempotent.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark import schemas as S
from genre_spark.errors import ConfigError, TableNotFoundError
from genre_spark.pipeline import (
    STAGES,
    UNDATED_STAGES,
    RunContext,
    StageResult,
    missing_undated,
    progress,
    run_stages,
    stages_before,
    train_discriminator,
    write_date_features,
)
from genre_spark.report import write_run_report
from genre_spark.storage import TableStore

if TYPE_CHECKING:
    from genre_spark.evaluation import EvaluationReport

# Stages that do not depend on the as-of date: a backfill runs them once, with the first date's run.
RANKING = "ranking"  # the stage whose output the pointer and the retention are about
STAGE = "refresh"  # the writing stage recorded in the app-transaction ids of this module's writes


@dataclass(frozen=True)
class RunOutcome:
    as_of: dt.date
    run_id: str
    skipped: bool  # the run was already recorded as complete: nothing ran
    results: tuple[StageResult, ...] = ()
    notes: tuple[str, ...] = ()

    def format(self) -> str:
        lines = []
        if self.skipped:
            lines.append(f"run {self.run_id} as of {self.as_of}: already complete, nothing to do")
        for result in self.results:
            lines += [result.summary, f"stage {result.stage}: {result.seconds:.1f} s"]
        return "\n".join([*lines, *self.notes])


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def completed_stages(store: TableStore, run_id: str) -> set[str]:
    """Stages recorded in ``runs`` as completed by ``run_id`` (empty when none)."""
    if not store.exists(S.RUNS):
        return set()
    # a handful of rows per run id
    rows = store.read_table(S.RUNS).filter(F.col(S.RUN_ID) == run_id).select("stages").collect()
    return {stage for row in rows for stage in row["stages"]}


def finish_run(ctx: RunContext, results: Sequence[StageResult], seconds: float) -> list[str]:
    """Retention, the latest pointer and the run record, after the stages; returns what it did."""
    notes = []
    stages = [r.stage for r in results]
    if RANKING in stages:
        notes.append(apply_retention(ctx.store, ctx.settings.storage.retention_days, ctx.as_of, ctx.run_id))
        notes.append(move_latest_pointer(ctx.store, ctx.as_of, ctx.run_id))
    record = ctx.spark.createDataFrame(
        [(ctx.run_id, ctx.as_of, stages, float(seconds), dt.datetime.now(dt.timezone.utc))],
        S.contract(S.RUNS),
    )
    # one record per stage set: the bundle's tasks and the stage notebooks each run part of one run id
    stage = f"{STAGE}:{'+'.join(stages)}"
    written = ctx.store.write_table(record, S.RUNS, mode="append", run_id=ctx.run_id, stage=stage)
    notes.append(f"run {ctx.run_id} {'already recorded' if written.skipped else 'recorded'} in '{S.RUNS}'")
    return notes


def apply_retention(store: TableStore, retention_days: int | None, as_of: dt.date, run_id: str) -> str:
    if retention_days is None:
        return "retention: off (storage.retention_days is null)"
    cutoff = as_of - dt.timedelta(days=retention_days)
    result = store.delete_where(S.RECOMMENDATIONS, f"{S.AS_OF} < '{cutoff.isoformat()}'", run_id=run_id)
    if result.skipped:
        return f"retention: no '{S.RECOMMENDATIONS}' partition before {cutoff}"
    deleted = f"{result.rows or 0:,} '{S.RECOMMENDATIONS}' rows before {cutoff}"
    return f"retention: deleted {deleted} (version {result.version})"


def move_latest_pointer(store: TableStore, as_of: dt.date, run_id: str) -> str:
    current = latest_pointer(store)
    if current is not None and current[0] > as_of:
        return f"latest: stays at {current[0]} (run {current[1]}), newer than {as_of}"
    if current is not None and current == (as_of, run_id):
        return f"latest: already {as_of} (run {run_id})"
    version = store.version(S.RECOMMENDATIONS)
    row = (as_of, run_id, version, dt.datetime.now(dt.timezone.utc))
    pointer = store.spark.createDataFrame([row], S.contract(S.RECOMMENDATIONS_LATEST))
    store.write_table(pointer, S.RECOMMENDATIONS_LATEST, mode="overwrite", run_id=run_id, stage=STAGE)
    return f"latest: {S.RECOMMENDATIONS_LATEST} -> {as_of} (run {run_id}, version {version})"


def latest_pointer(store: TableStore) -> tuple[dt.date, str] | None:
    """(as_of, run_id) the pointer names, None before the first ranking run."""
    if not store.exists(S.RECOMMENDATIONS_LATEST):
        return None
    row = store.read_table(S.RECOMMENDATIONS_LATEST).first()
    return None if row is None else (row[S.AS_OF], row[S.RUN_ID])


def read_latest_recommendations(store: TableStore) -> DataFrame:
    """The lists of the newest run: ``recommendations`` at the pointer's as_of and run id."""
    pointer = latest_pointer(store)
    if pointer is None:
        raise TableNotFoundError(S.RECOMMENDATIONS_LATEST, store.table_path(S.RECOMMENDATIONS_LATEST))
    as_of, run_id = pointer
    return store.read_table(S.RECOMMENDATIONS).filter(
        (F.col(S.AS_OF) == F.lit(as_of).cast(T.DateType())) & (F.col(S.RUN_ID) == run_id)
    )


def run_once(ctx: RunContext, stages: Sequence[str] | None = None) -> RunOutcome:
    """The stages of one run that ``runs`` does not record for its run id yet, then :func:`finish_run`;
    nothing at all when it records every one (a rerun: the run id covers the config, the strategies and the
    context). After runs of part of the stages (the bundle's tasks, the stage notebooks) only the others run,
    so the recorded ones neither recompute nor refit their models. (A run that failed recorded nothing: its
    retry runs every stage, and the writes already committed are skipped.)"""
    done = completed_stages(ctx.store, ctx.run_id)
    todo = [s for s in (stages or STAGES) if s not in done]
    if not todo:
        return RunOutcome(ctx.as_of, ctx.run_id, True)
    started = time.perf_counter()
    results = run_stages(ctx, todo)
    seconds = time.perf_counter() - started
    notes = finish_run(ctx, results, seconds)
    report = write_run_report(ctx, results, notes, seconds)
    notes.append(f"report: {report}")
    return RunOutcome(ctx.as_of, ctx.run_id, False, tuple(results), tuple(notes))


def backfill(
    make_context: Callable[[dt.date], RunContext],
    start: dt.date,
    end: dt.date,
    stages: Sequence[str] | None = None,
    report: Callable[[RunOutcome], None] = lambda outcome: None,
) -> list[RunOutcome]:
    """One run per date from ``start`` to ``end``; the undated stages (ingest, enrich) only with the first.

    A date whose run is recorded in ``runs`` with every stage asked for is skipped, so rerunning a
    backfill (or resuming one that failed) commits nothing for the dates already done.
    """
    wanted = list(STAGES) if not stages else [s for s in STAGES if s in stages]
    outcomes = []
    for i, as_of in enumerate(date_range(start, end)):
        ctx = make_context(as_of)
        these = wanted if i == 0 else [s for s in wanted if s not in UNDATED_STAGES]
        if not these:
            continue
        outcome = run_once(ctx, these)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def evaluate_date(
    ctx: RunContext, horizon_days: int | None, report: Callable[[RunOutcome], None] = lambda outcome: None
) -> EvaluationReport:
    """`genre-spark evaluate`: the stages the evaluation reads (the undated ones when their tables are
    missing; the dated ones before the discriminator unless ``runs`` records them for the run id), the
    learned ranker (trained whether or not ``discriminator.enabled``, unless the run recorded it) with the
    date's pair features kept in ``ranker_features`` (a run scores them without keeping them: written here
    when it did), then the evaluation of the date. ``report`` receives the outcome of the stages run first."""
    from genre_spark.evaluation import evaluate  # the evaluation's imports only where it runs

    done = completed_stages(ctx.store, ctx.run_id)
    stages = [*missing_undated(ctx.store), *[s for s in stages_before("discriminator") if s not in done]]
    if stages:
        report(run_once(ctx, stages))
    if "discriminator" not in done or not ctx.settings.discriminator.enabled:
        progress("stage discriminator: started")
        started = time.perf_counter()
        progress(train_discriminator(ctx, keep_features=True))
        progress(f"stage discriminator: done in {time.perf_counter() - started:.1f} s")
    else:  # the run scored the date's features without keeping them
        write_date_features(ctx)
    progress("stage evaluate: started")
    started = time.perf_counter()
    result = evaluate(
        ctx.spark, ctx.store, ctx.settings, ctx.strategies, ctx.context, ctx.run_id, horizon_days
    )
    progress(f"stage evaluate: done in {time.perf_counter() - started:.1f} s")
    return result
