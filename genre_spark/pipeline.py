"""The stages in GENRE-loop order, and running some or all of them for one as-of date."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from genre_spark.candidates import run_candidates
from genre_spark.config import Settings
from genre_spark.enrich import run_enrich
from genre_spark.features import run_features
from genre_spark.feedback import adaptive_chooser_from_store
from genre_spark.ingest import run_ingest
from genre_spark.ranking import run_ranking
from genre_spark.scoring import run_scoring
from genre_spark.segments import run_segments
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, StrategyBook


@dataclass(frozen=True)
class RunContext:
    spark: SparkSession
    store: TableStore
    settings: Settings
    as_of: dt.date
    run_id: str
    strategies: StrategyBook
    context: Context  # the as-of day and the --context-hour band the lists are made for


@dataclass(frozen=True)
class StageResult:
    stage: str
    seconds: float
    summary: str


def _ingest(ctx: RunContext) -> str:
    return run_ingest(ctx.spark, ctx.store, ctx.settings.ingest, ctx.run_id).format()


def _enrich(ctx: RunContext) -> str:
    return run_enrich(ctx.spark, ctx.store, ctx.settings.enrich, ctx.run_id).format()


def _features(ctx: RunContext) -> str:
    s = ctx.settings
    return run_features(ctx.store, s.features, s.enrich.n_categories, ctx.as_of, ctx.run_id).format()


def _segments(ctx: RunContext) -> str:
    return run_segments(ctx.spark, ctx.store, ctx.settings.segments, ctx.as_of, ctx.run_id).format()


def _candidates(ctx: RunContext) -> str:
    return run_candidates(ctx.spark, ctx.store, ctx.settings.candidates, ctx.as_of, ctx.run_id).format()


def _scoring(ctx: RunContext) -> str:
    return run_scoring(ctx.store, ctx.settings.scoring, ctx.as_of, ctx.run_id).format()


def _ranking(ctx: RunContext) -> str:
    k = ctx.settings.ranking.k
    choose = None  # the selection rules
    if ctx.settings.feedback.adaptive:  # Thompson sampling from strategy_state
        choose = adaptive_chooser_from_store(ctx.store, ctx.strategies, ctx.settings.feedback, ctx.context)
    return run_ranking(ctx.spark, ctx.store, ctx.strategies, ctx.context, k, ctx.run_id, choose).format()


# Stage name -> function; `genre-spark run` runs them in this order.
STAGES: dict[str, Callable[[RunContext], str]] = {
    "ingest": _ingest,
    "enrich": _enrich,
    "features": _features,
    "segments": _segments,
    "candidates": _candidates,
    "scoring": _scoring,
    "ranking": _ranking,
}


def run_stages(ctx: RunContext, stages: Sequence[str] | None = None) -> list[StageResult]:
    selected = list(STAGES) if not stages else list(stages)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid choices: {list(STAGES)}")
    results = []
    for name in STAGES:  # always in pipeline order, whatever order they were asked in
        if name in selected:
            start = time.perf_counter()
            summary = STAGES[name](ctx)
            results.append(StageResult(name, time.perf_counter() - start, summary))
    return results
