"""The stage table (GENRE-loop order, what each stage reads and writes, whether it is dated) and running
some or all of the stages for one as-of date.

Every entry point asks this table what to run: `run` and the notebooks (all stages or some), `evaluate` and
the learned ranker's training cut-offs (the dated stages before the discriminator), `replay` and `backfill`
(the undated stages once, the dated ones per date). A new stage is one row here and one module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import run_candidates
from genre_spark.config import Settings
from genre_spark.enrich import run_enrich
from genre_spark.errors import ConfigError, PartialInputError
from genre_spark.features import run_features
from genre_spark.feedback import adaptive_chooser_from_store, run_feedback
from genre_spark.history import History
from genre_spark.ingest import run_ingest
from genre_spark.learned.features import feature_columns
from genre_spark.learned.stage import (
    Decide,
    feature_users,
    fingerprint,
    reusable_model,
    run_discriminator,
    training_cutoffs,
    training_sample,
    training_users,
    write_features,
)
from genre_spark.ranking import rule_chooser, run_ranking, segment_strategies
from genre_spark.scoring import run_scoring
from genre_spark.segments import run_segments, write_unsegmented
from genre_spark.storage import TableStore, WriteResult
from genre_spark.strategy import Context, StrategyBook, new_items_book


@dataclass(frozen=True)
class RunContext:
    spark: SparkSession
    store: TableStore
    settings: Settings
    as_of: dt.date
    run_id: str
    strategies: StrategyBook
    context: Context  # the as-of day and the --context-hour band the lists are made for
    # a training cut-off of the learned ranker: its features, segments and candidates stages are only for
    # the users the ranker trains on (learned.stage.feature_users, training_users), not for everyone
    training_cutoff: bool = False

    @cached_property
    def stage_settings(self) -> str:
        """The fingerprint of what shapes the dated stages' outputs (the settings they read, the strategy
        book, the hour band), recorded with every write of this run (``STAGE_SETTINGS_KEY``)."""
        return self.settings.stage_fingerprint(self.strategies, self.context.hour_band)

    @property
    def proposed_for(self) -> str:
        """Whom this run's features, segments and candidates are for, recorded with its writes
        (``PROPOSED_FOR_KEY``)."""
        return made_for_training(self.settings) if self.training_cutoff else EVERYONE

    @cached_property
    def history(self) -> History:
        """The events before ``as_of`` and the catalog as of it, read once (by the first dated stage, after
        ingest and enrich) and handed to every dated stage of this run and date."""
        return History.read(self.store, self.as_of)


@dataclass(frozen=True)
class StageResult:
    stage: str
    seconds: float
    summary: str
    rows: int = 0  # rows the stage wrote (all its tables)


def _ingest(ctx: RunContext) -> str:
    return run_ingest(ctx.spark, ctx.store, ctx.settings.ingest, ctx.run_id).format()


def _enrich(ctx: RunContext) -> str:
    return run_enrich(ctx.store, ctx.settings.enrich, ctx.run_id).format()


def _features(ctx: RunContext) -> str:
    s = ctx.settings
    # a training cut-off's: its ranker's sample only (and so its segments)
    sample = feature_users(ctx.store, ctx.history, s.discriminator) if ctx.training_cutoff else None
    report = run_features(ctx.store, ctx.history, s.features, s.enrich.n_categories, ctx.run_id, sample)
    return report.format()


def _segments(ctx: RunContext) -> str:
    s, cutoff = ctx.settings.segments, ctx.training_cutoff  # a cut-off's fit is its sample's, not published
    if cutoff and not training_reads_segments(ctx.settings):
        written = write_unsegmented(ctx.store, ctx.as_of, ctx.run_id)
        return (
            f"segments as of {ctx.as_of}: not fitted, {written.rows or 0:,} users in one segment (the "
            "ranker reads no segment: 'segment' in discriminator.without, segment_popularity off)"
        )
    return run_segments(ctx.spark, ctx.store, s, ctx.as_of, ctx.run_id, publish=not cutoff).format()


def training_reads_segments(settings: Settings) -> bool:
    """Whether a training cut-off's segments reach the ranker: as its segment feature group, or through
    the segment-popularity source's candidates. When not, the cut-off's segments stage fits nothing
    (~18 s per cut-off on the sample: the silhouette search over k)."""
    popular = settings.candidates.limits.get("segment_popularity", 0) > 0
    return "segment" not in settings.discriminator.without or popular


def made_for_training(settings: Settings) -> str:
    """What a training cut-off's features, segments and candidates are made for (``PROPOSED_FOR_KEY``): the
    ranker's sample and, when the ranker reads no segment, that its segments were not fitted (a ranker
    that reads them needs the cut-off's stages again: ``discriminator.without`` is not in the stages'
    settings fingerprint)."""
    sample = training_sample(settings.discriminator)
    return sample if training_reads_segments(settings) else f"{sample}; segments not fitted"


def _candidates(ctx: RunContext) -> str:
    s = ctx.settings
    users = training_users(ctx.store, ctx.history, s.discriminator) if ctx.training_cutoff else None
    return run_candidates(ctx.store, ctx.history, s.candidates, ctx.run_id, users).format()


def _scoring(ctx: RunContext) -> str:
    return run_scoring(ctx.store, ctx.history, ctx.settings.scoring, ctx.run_id).format()


def strategy_decider(ctx: RunContext) -> Decide:
    """day -> the strategy the selection rules give each segment of that day (in the run's hour band)."""

    def decide(day: dt.date) -> dict[int, str]:
        segments = ctx.store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(day))
        return segment_strategies(segments, rule_chooser(ctx.strategies, Context(day, ctx.context.hour_band)))

    return decide


STAGE_SETTINGS_KEY = "genre_spark.stage_settings"  # commit metadata: the writing run's stage_settings
PROPOSED_FOR_KEY = "genre_spark.proposed_for"  # commit metadata: the writing run's proposed_for
EVERYONE = "everyone"


def missing_stages(ctx: RunContext, day: dt.date) -> list[str]:
    """The training stages to run for ``day``: all when its candidates are missing or were written under
    other stage settings (another candidates config must not train the ranker on old candidates while it
    scores new ones), scoring when only the scores are (only for a model that uses the LM scores)."""
    scored = bool(ctx.settings.scoring.scorers()) and "lm" not in ctx.settings.discriminator.without
    if not _current_partition(ctx, S.CANDIDATES, day):
        return stages_before("discriminator", scored=scored)
    if scored and not _current_partition(ctx, S.SCORES, day):
        return ["scoring"]
    return []


def cutoff_context(ctx: RunContext, day: dt.date) -> RunContext:
    """The run context of a training cut-off's stages. Its run id holds the run's, the day, and the
    candidates table's next version, so that stages run again after another config rewrote the day are
    new writes, not skipped reruns of the first."""
    version = ctx.store.version(S.CANDIDATES)
    run_id = f"{ctx.run_id}-train-{day}-v{0 if version is None else version + 1}"
    return dataclasses.replace(ctx, as_of=day, run_id=run_id, training_cutoff=True)


def train_discriminator(ctx: RunContext, keep_features: bool = False) -> str:
    """Run the stages for the training cut-offs that lack them (unless the latest model is reused), then
    train or reuse the ranker and score the candidates as of the run's date (``keep_features``: their
    features written to ``ranker_features`` too)."""
    settings = ctx.settings.discriminator
    lines = []
    wanted = fingerprint(settings, feature_columns(frozenset(settings.without)), ctx.stage_settings)
    reused = reusable_model(ctx.store, ctx.as_of, settings, wanted)
    if reused is None:
        for day in training_cutoffs(ctx.as_of, settings):
            stages = missing_stages(ctx, day)
            if stages:
                lines += [r.summary for r in run_stages(cutoff_context(ctx, day), stages)]
    decide = strategy_decider(ctx)
    report = run_discriminator(
        ctx.store, ctx.history, settings, decide, ctx.strategies, ctx.run_id, wanted, reused, keep_features
    )
    return "\n".join([*lines, report.format()])


def write_date_features(ctx: RunContext) -> WriteResult:
    """The ``ranker_features`` of the run's date (a no-op when this run id wrote them): the ranker scores
    them as they are computed, so a run keeps none; evaluate reads them."""
    decisions = strategy_decider(ctx)(ctx.as_of)
    settings = ctx.settings.discriminator
    return write_features(ctx.store, ctx.history, decisions, ctx.strategies, ctx.run_id, settings, False)


def _current_partition(ctx: RunContext, table: str, as_of: dt.date) -> bool:
    """``table`` has rows for ``as_of``, written under this run's stage settings, for everyone or for
    the training sample this run's cut-offs want."""
    written = ctx.store.partition_commit(table, as_of)
    if written is None or written.get(STAGE_SETTINGS_KEY) != ctx.stage_settings:
        return False
    wanted = made_for_training(ctx.settings)
    if written.get(PROPOSED_FOR_KEY, EVERYONE) not in (EVERYONE, wanted):
        return False
    on_date = F.col(S.AS_OF) == F.lit(as_of)
    return bool(ctx.store.read_table(table).filter(on_date).limit(1).count())


def _discriminator(ctx: RunContext) -> str:
    if not ctx.settings.discriminator.enabled:
        return "discriminator: off (discriminator.enabled: false)"
    return train_discriminator(ctx)


def _feedback(ctx: RunContext) -> str:
    s = ctx.settings
    return run_feedback(
        ctx.store,
        s.feedback,
        ctx.as_of,
        ctx.run_id,
        hour_band=ctx.context.hour_band,
        fold_item_case=s.ingest.fold_item_id_case,
    ).format()


def _ranking(ctx: RunContext) -> str:
    k = ctx.settings.ranking.k
    book = new_items_book(ctx.strategies) if ctx.settings.ranking.new_items else ctx.strategies
    choose = None  # the selection rules
    if ctx.settings.feedback.adaptive:  # Thompson sampling from strategy_state
        choose = adaptive_chooser_from_store(ctx.store, book, ctx.settings.feedback, ctx.context)
    return run_ranking(ctx.spark, ctx.store, ctx.history, book, ctx.context, k, ctx.run_id, choose).format()


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], str]  # the run context in, a printable summary out
    dated: bool  # writes one partition per as-of date (undated stages build the warehouse's current state)
    reads: tuple[str, ...]
    writes: tuple[str, ...]  # the first is the table whose presence means the stage has run


# The stages in the order `genre-spark run` runs them.
STAGE_TABLE: tuple[Stage, ...] = (
    Stage("ingest", _ingest, False, (), (S.EVENTS, S.QUARANTINE, S.ITEMS, S.USERS, S.INGESTED_FILES)),
    Stage("enrich", _enrich, False, (S.ITEMS,), (S.ITEM_EMBEDDINGS, S.ITEMS)),
    Stage("features", _features, True, (S.EVENTS, S.ITEMS), (S.USER_FEATURES,)),
    Stage("segments", _segments, True, (S.USER_FEATURES,), (S.USER_SEGMENTS, S.SEGMENT_PROFILES)),
    Stage(
        "candidates",
        _candidates,
        True,
        (S.EVENTS, S.ITEMS, S.USER_SEGMENTS, S.ITEM_EMBEDDINGS),
        (S.CANDIDATES,),
    ),
    Stage(
        "scoring",
        _scoring,
        True,
        (S.EVENTS, S.ITEMS, S.USER_FEATURES, S.USER_SEGMENTS, S.CANDIDATES, S.ITEM_EMBEDDINGS),
        (S.SCORES,),
    ),
    Stage(
        "discriminator",
        _discriminator,
        True,
        (S.EVENTS, S.ITEMS, S.USER_SEGMENTS, S.CANDIDATES, S.SCORES),
        (S.RANKER_SCORES, S.RANKER_FEATURES),
    ),
    Stage(
        "feedback",  # what happened to earlier lists, before today's lists are chosen
        _feedback,
        True,
        (S.RECOMMENDATIONS, S.USER_SEGMENTS, S.EVENTS, S.FEEDBACK_EVENTS, S.STRATEGY_STATE),
        (S.STRATEGY_STATE, S.FEEDBACK_EVENTS, S.QUARANTINE, S.INGESTED_FILES),
    ),
    Stage(
        "ranking",
        _ranking,
        True,
        (S.EVENTS, S.ITEMS, S.USER_SEGMENTS, S.CANDIDATES, S.SCORES, S.RANKER_SCORES, S.STRATEGY_STATE),
        (S.RECOMMENDATIONS,),
    ),
)
STAGES: dict[str, Callable[[RunContext], str]] = {s.name: s.run for s in STAGE_TABLE}
UNDATED_STAGES = tuple(s.name for s in STAGE_TABLE if not s.dated)


def stages_before(name: str, *, scored: bool = True) -> list[str]:
    """The dated stages ahead of ``name``: what a date needs before ``name`` can run for it (the learned
    ranker's training cut-offs, evaluate, each week of replay); without scoring unless ``scored``."""
    names = [s.name for s in STAGE_TABLE]
    ahead = [s.name for s in STAGE_TABLE[: names.index(name)] if s.dated]
    return ahead if scored else [s for s in ahead if s != "scoring"]


def missing_undated(store: TableStore) -> list[str]:
    """The undated stages the warehouse lacks the main table of (ingest: events, enrich: item embeddings)."""
    return [s.name for s in STAGE_TABLE if not s.dated and not store.exists(s.writes[0])]


SAMPLED_TABLES = (S.USER_FEATURES, S.USER_SEGMENTS, S.CANDIDATES)  # a training cut-off's, for its sample


def check_inputs_cover_everyone(ctx: RunContext, selected: Sequence[str]) -> None:
    """Stop a run that would read a date's features, segments or candidates without making them when a
    training cut-off made them for its sample only: what it writes would cover those users alone."""
    if ctx.proposed_for != EVERYONE:
        return
    made = {table for s in STAGE_TABLE if s.name in selected for table in s.writes}
    read = {table for s in STAGE_TABLE if s.name in selected for table in s.reads}
    partial = {}
    for table in SAMPLED_TABLES:
        if table in read and table not in made:
            sample = (ctx.store.partition_commit(table, ctx.as_of) or {}).get(PROPOSED_FOR_KEY, EVERYONE)
            if sample != EVERYONE:
                partial[table] = sample
    if partial:
        readers = [s.name for s in STAGE_TABLE if s.name in selected and set(s.reads) & set(partial)]
        names = ", ".join(f"'{table}'" for table in partial)
        samples = "; ".join(sorted(set(partial.values())))  # one, unless the tables came from two runs
        raise PartialInputError(
            f"table(s) {names} as of {ctx.as_of} hold what a training cut-off made for its sample "
            f"({samples}), not every user: stage(s) {readers} would cover those users "
            f"only; run the features stage and those after it for {ctx.as_of} under a new run id"
        )


def run_stages(ctx: RunContext, stages: Sequence[str] | None = None) -> list[StageResult]:
    selected = list(STAGES) if not stages else list(stages)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; valid choices: {list(STAGES)}")
    check_inputs_cover_everyone(ctx, selected)
    results = []
    ctx.store.progress = progress
    ctx.store.commit_tags = {STAGE_SETTINGS_KEY: ctx.stage_settings, PROPOSED_FOR_KEY: ctx.proposed_for}
    for name in STAGES:  # always in pipeline order, whatever order they were asked in
        if name in selected:
            start = time.perf_counter()
            progress(f"stage {name}: started")
            before = len(ctx.store.write_log)
            try:
                summary = STAGES[name](ctx)
            except Exception as exc:
                exc.add_note(f"in stage '{name}' as of {ctx.as_of} (run {ctx.run_id})")
                raise
            seconds = time.perf_counter() - start
            written = sum(w.rows or 0 for _, w in ctx.store.write_log[before:] if not w.skipped)
            results.append(StageResult(name, seconds, summary, written))
            progress(f"stage {name}: done in {seconds:.1f} s, {written:,} rows written")
    return results


def progress(message: str) -> None:
    """One progress line, flushed at once (a terminal, a driver log, a Databricks cell)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
