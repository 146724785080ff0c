"""Offline evaluation: what does each part of the product buy? One table, both variants, -> ``metrics``.

Protocol (the learned-ranking issue's, so the figures compare): split at T = ``as_of``; everything is fitted
on events before T; truth = the distinct products each user bought in ``[T, T + horizon)``; evaluated users
bought a product before T and one in the window. Variant *all* counts repeat purchases; in *new* the items a
user bought before T leave the truth (users left without truth drop out) and may not be listed. NDCG@k with
binary relevance, ideal DCG over min(|truth|, k) positions, averaged over every evaluated user (no list = 0);
the definitions are in :mod:`genre_spark.metrics`.

Models, all from one pass of the stages (one feature table, one model, every score at once):
- ``product``: the default lists, exactly as ``genre-spark run`` makes them (the learned ranker's order under
  the strategies' rules; the new-items mode for *new*),
- ``learned``: the ranker's order alone (no rules, no caps): what the rules cost,
- ``learned -<group>`` / ``learned -<source>``: the ranker refitted without a feature group (the LM scores,
  the segment and its strategy) or without a candidate source (its features and the candidates only it found),
  on the model's most recent ``evaluation.ablation_cutoffs`` cut-offs; when those are fewer than the model's,
  ``learned refit`` is the refit with everything on the same cut-offs, the row to read the ablations against,
- ``blend``: the hand-set strategy blend, ranked through the same rules as ``product``,
- baselines: each candidate source alone (``evaluation.baselines``), and the recency-decayed buy-again
  ``buy_again_decayed`` (score = sum over the user's orders of the item of 0.5^(age / half life)), its half
  life picked on the window before T.

It also reports the recall ceiling: the share of the truth's (user, item) pairs that the candidates hold,
per source and together.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import __version__
from genre_spark import schemas as S
from genre_spark.candidates import SourceInputs, generate_candidates
from genre_spark.config import CandidateSettings, DiscriminatorSettings, EvaluationSettings, Settings
from genre_spark.errors import ConfigError, TableNotFoundError
from genre_spark.history import History, bought_pairs, days_before, decay, purchase_history, purchases_between
from genre_spark.learned import model as M
from genre_spark.learned.features import MISSING_RANK, feature_columns
from genre_spark.learned.stage import MODEL_KIND, ModelNote, training_set
from genre_spark.metrics import (
    ITEMS_COL,
    MODEL,
    USERS_EVALUATED,
    VARIANT,
    VARIANT_ALL,
    VARIANT_NEW,
    list_metrics,
    top_k_lists,
)
from genre_spark.ranking import RankingInputs, rank, rule_chooser
from genre_spark.storage import TableStore, WriteResult
from genre_spark.strategy import Context, StrategyBook, new_items_book, with_ranker

PRODUCT = "product"
LEARNED = "learned"
BLEND = "blend"
DECAYED = "buy_again_decayed"
HEADLINE = ("ndcg", "recall", "hit_rate")


# --------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class Truth:
    history: DataFrame  # (user_id, item_id) bought before T by the evaluated users
    lists: DataFrame  # (variant, user_id, items): the truth per evaluated user and variant


def protocol_truth(events: DataFrame, items: DataFrame, as_of: dt.date, end: dt.date) -> Truth:
    before = bought_pairs(History.of(events, items, as_of).purchases())
    after = bought_pairs(purchases_between(events, items, as_of, end))
    after = after.join(before.select(S.USER_ID).distinct(), S.USER_ID, "left_semi")
    new = after.join(before, [S.USER_ID, S.ITEM_ID], "left_anti")

    def lists(pairs: DataFrame, variant: str) -> DataFrame:
        grouped = pairs.groupBy(S.USER_ID).agg(F.sort_array(F.collect_set(S.ITEM_ID)).alias(ITEMS_COL))
        return grouped.select(F.lit(variant).alias(VARIANT), S.USER_ID, ITEMS_COL)

    history = before.join(after.select(S.USER_ID).distinct(), S.USER_ID, "left_semi")
    return Truth(history, lists(after, VARIANT_ALL).unionByName(lists(new, VARIANT_NEW)))


# --------------------------------------------------------------------------- scores of every model


def decayed_buy_again(purchases: DataFrame, as_of: dt.date, half_life: float) -> DataFrame:
    """(user_id, item_id, score): sum over the user's orders of the item of 0.5^(age / half life)."""
    per_order = purchases.groupBy(S.USER_ID, S.ITEM_ID, S.ORDER_ID).agg(
        F.min(days_before(as_of, S.EVENT_TS)).alias("_age")
    )
    return per_order.groupBy(S.USER_ID, S.ITEM_ID).agg(F.sum(decay(F.col("_age"), half_life)).alias("score"))


def pick_half_life(
    events: DataFrame, items: DataFrame, as_of: dt.date, horizon: int, choices: Sequence[float], k: int
) -> tuple[float, dict[float, float]]:
    """The half life whose decayed buy-again has the best NDCG@k on the window before ``as_of``
    (history before ``as_of - horizon``, truth in ``[as_of - horizon, as_of)``)."""
    start = as_of - dt.timedelta(days=horizon)
    truth = protocol_truth(events, items, start, as_of).lists.filter(F.col(VARIANT) == VARIANT_ALL)
    purchases = History.of(events, items, start).purchases()
    scored = [
        decayed_buy_again(purchases, start, h).select(
            F.lit(str(h)).alias(MODEL), F.lit(VARIANT_ALL).alias(VARIANT), S.USER_ID, S.ITEM_ID, "score"
        )
        for h in choices
    ]
    lists = top_k_lists(_union(scored), k)
    rows = list_metrics(lists, truth, [k]).filter(F.col("metric") == "ndcg").collect()  # one per choice
    ndcg = {float(r[MODEL]): float(r["value"]) for r in rows}
    if not ndcg:  # nobody bought in the window before: the middle choice
        return sorted(choices)[len(choices) // 2], ndcg
    return max(ndcg, key=lambda h: (ndcg[h], -h)), ndcg


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def only_from(source: str) -> F.Column:
    """The candidate pairs that ``source`` alone proposed (the ranker features' view)."""
    return (F.col(f"{source}_rank") < MISSING_RANK) & (F.col("n_sources") == 1)


REFIT = f"{LEARNED} refit"  # everything on, on the ablations' cut-offs
ABLATED_GROUPS = ("lm", "segment", "season")  # feature groups refitted without (the sources are each one too)


@dataclass(frozen=True)
class Ablation:
    name: str
    without_groups: frozenset[str] = frozenset()
    without_source: str | None = None


def ablations(settings: DiscriminatorSettings, present: list[str], refit: bool) -> list[Ablation]:
    """One refit per feature group the model uses (lm when scores exist, segment, season) and per source that
    proposed anything (``present``: the sources and "lm" found in the test features); first the refit
    with everything when ``refit`` (the ablations train on fewer cut-offs than the model)."""
    kept = frozenset(settings.without)
    used = [g for g in ABLATED_GROUPS if g not in kept and (g != "lm" or "lm" in present)]
    out = [Ablation(REFIT, kept)] if refit else []
    out += [Ablation(f"{LEARNED} -{g}", kept | {g}) for g in used]
    sources = [s for s in S.CANDIDATE_SOURCES if s in present]
    return out + [Ablation(f"{LEARNED} -{s}", kept, s) for s in sources]


def report_order(evaluation: EvaluationSettings) -> list[str]:
    """Every model the evaluation can score, in the order the table shows them."""
    ablated = [f"{LEARNED} -{part}" for part in (*ABLATED_GROUPS, *S.CANDIDATE_SOURCES)]
    return [PRODUCT, LEARNED, REFIT, *ablated, BLEND, *evaluation.baselines, DECAYED]


def ablation_cutoffs(note: ModelNote, evaluation: EvaluationSettings) -> list[dt.date]:
    """The model's most recent ``evaluation.ablation_cutoffs`` cut-offs (all when null)."""
    newest = sorted(note.cutoffs, reverse=True)
    return newest[: evaluation.ablation_cutoffs] if evaluation.ablation_cutoffs else newest


def present_parts(test: DataFrame) -> list[str]:
    """The sources that proposed a candidate, and "lm" when any scorer scored one (one aggregate row)."""
    lm = F.coalesce(*[F.col(f"{n}_score") for n in S.SCORER_NAMES]).isNotNull()
    flags = [F.max((F.col(f"{s}_rank") < MISSING_RANK).cast("int")).alias(s) for s in S.CANDIDATE_SOURCES]
    row = test.agg(*flags, F.max(lm.cast("int")).alias("lm")).first()  # one row
    return [name for name in [*S.CANDIDATE_SOURCES, "lm"] if row is not None and row[name]]


def ablation_scores(
    training: DataFrame, settings: DiscriminatorSettings, test: DataFrame, ablation: Ablation
) -> DataFrame:
    """(user_id, item_id, score) of the ranker refitted on ``training`` (the labelled features of the
    ablations' cut-offs) without a group or a source, on the test features."""
    columns = feature_columns(ablation.without_groups)
    if ablation.without_source is not None:
        source = ablation.without_source
        columns = [c for c in columns if not c.startswith(f"{source}_")]
        training = training.filter(~only_from(source))
        test = test.filter(~only_from(source))
    fitted = M.fit(training, settings, columns)
    return M.predict(fitted, test).select(S.USER_ID, S.ITEM_ID, "score")


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class EvaluationReport:
    as_of: dt.date
    horizon_days: int
    ks: list[int]
    models: list[str]
    users_evaluated: dict[str, int]  # variant -> evaluated users
    headline: dict[tuple[str, str, str, int], float]  # (variant, model, metric, k) -> value
    recall_ceiling: dict[tuple[str, str], float]  # (variant, source or "all sources") -> share of truth pairs
    half_life: float | None  # the decayed buy-again's, picked on the window before T
    importances: list[tuple[str, float]]
    write: WriteResult
    seconds: dict[str, float] = field(default_factory=dict)

    def value(self, variant: str, model: str, metric: str = "ndcg", k: int = 10) -> float:
        return self.headline.get((variant, model, metric, k), float("nan"))

    def format(self) -> str:
        k0 = self.ks[0]
        columns = [(m, k) for k in self.ks for m in HEADLINE]
        lines = [f"evaluation as of {self.as_of}, purchases of the next {self.horizon_days} days"]
        for variant in (VARIANT_ALL, VARIANT_NEW):
            lines.append(f" variant '{variant}' ({self.users_evaluated.get(variant, 0):,} users evaluated)")
            lines.append(
                f"  {'model':<28}" + "".join(f"{f'{m}@{k}':>13}" for m, k in columns) + f"{'vs product':>12}"
            )
            product = self.value(variant, PRODUCT, "ndcg", k0)
            for model in self.models:
                cells = "".join(f"{self.value(variant, model, m, k):>13.4f}" for m, k in columns)
                mine = self.value(variant, model, "ndcg", k0)
                lift = f"{(product / mine - 1):>+12.1%}" if mine > 0 and model != PRODUCT else f"{'':>12}"
                lines.append(f"  {model:<28}{cells}{lift}")
        if self.half_life is not None:
            lines.append(
                f" {DECAYED}: half life {self.half_life:g} days (best NDCG@{k0} on the window before)"
            )
        sources = [s for v, s in self.recall_ceiling if v == VARIANT_ALL]
        lines.append(" recall ceiling (share of the truth's pairs among the candidates):")
        for variant in (VARIANT_ALL, VARIANT_NEW):
            cells = ", ".join(f"{s} {self.recall_ceiling.get((variant, s), 0.0):.1%}" for s in sources)
            lines.append(f"  {variant}: {cells}")
        if self.importances:
            top = ", ".join(f"{n} {g:.1%}" for n, g in self.importances[:10])
            lines.append(f" ranker features by gain: {top}")
        if self.seconds:
            lines.append(" seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def recall_ceiling(test: DataFrame, truth: DataFrame) -> dict[tuple[str, str], float]:
    """Share of the truth's (user, item) pairs among the candidates, per source and in all, per variant."""
    pairs = truth.select(VARIANT, S.USER_ID, F.explode(ITEMS_COL).alias(S.ITEM_ID))
    found = {s: F.col(f"{s}_rank") < MISSING_RANK for s in S.CANDIDATE_SOURCES}
    joined = pairs.join(test, [S.USER_ID, S.ITEM_ID], "left")
    aggs = [F.avg(F.col("n_sources").isNotNull().cast("double")).alias("all sources")]
    aggs += [F.avg(F.coalesce(cond, F.lit(False)).cast("double")).alias(s) for s, cond in found.items()]
    rows = joined.groupBy(VARIANT).agg(*aggs).collect()  # one row per variant
    return {(r[VARIANT], name): float(r[name] or 0.0) for r in rows for name in ["all sources", *found]}


# --------------------------------------------------------------------------- evaluate


def _required(store: TableStore, as_of: dt.date) -> None:
    for table in (S.USER_SEGMENTS, S.CANDIDATES, S.RANKER_FEATURES, S.RANKER_SCORES):
        if not store.exists(table):
            raise TableNotFoundError(table, store.table_path(table))
    if not store.read_table(S.RANKER_SCORES).filter(F.col(S.AS_OF) == F.lit(as_of)).limit(1).count():
        raise ConfigError(f"no ranker_scores as of {as_of}: run the discriminator stage for that date first")


def _model_note(store: TableStore, as_of: dt.date) -> ModelNote:
    scored = store.read_table(S.RANKER_SCORES).filter(F.col(S.AS_OF) == F.lit(as_of))
    model_run = scored.select("model_run_id").first()  # one row
    text = store.read_model_note(MODEL_KIND, model_run[0]) if model_run else None
    if text is None:
        raise ConfigError(f"the ranker that scored {as_of} has no saved note under {store.warehouse}/_models")
    return ModelNote.from_json(text)


def _rule_lists(
    spark: SparkSession, inputs: RankingInputs, book: StrategyBook, ctx: Context, k: int, run_id: str
) -> DataFrame:
    """(model, variant, user_id, items) of ``product`` and ``blend`` through the ranking of ``run``."""
    frames = []
    for variant, variant_book in ((VARIANT_ALL, book), (VARIANT_NEW, new_items_book(book))):
        for model, model_book in ((PRODUCT, variant_book), (BLEND, with_ranker(variant_book, "blend"))):
            choose = rule_chooser(model_book, ctx)
            recs = rank(spark, inputs, model_book, ctx, k, run_id, f"genre-spark {__version__}", choose)
            frames.append(
                recs.select(
                    F.lit(model).alias(MODEL),
                    F.lit(variant).alias(VARIANT),
                    S.USER_ID,
                    S.ITEM_ID,
                    (-F.col("rank")).cast("double").alias("score"),
                )
            )
    return top_k_lists(_union(frames), k)


BASELINE_DEPTH = 100  # candidates per user of a baseline made by evaluate (the new variant drops past items)


def baseline_candidates(
    store: TableStore, settings: CandidateSettings, sources: list[str], history: History, k: int
) -> DataFrame:
    """The candidates of baseline sources the product's candidates do not hold (a source off by default
    still serves as a baseline), made as the candidates stage makes them."""
    as_of = history.as_of
    purchases = history.purchases()
    return generate_candidates(
        SourceInputs(
            purchases,
            purchase_history(purchases),
            store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(as_of)),
            history.items,
            store.read_table(S.ITEM_EMBEDDINGS) if "content" in sources else None,
            settings.model_copy(update={"limits": dict.fromkeys(sources, max(k, BASELINE_DEPTH))}),
            as_of,
        )
    )


def _scored_lists(
    store: TableStore,
    settings: Settings,
    test: DataFrame,
    history: History,
    note: ModelNote,
    half_life: float,
    k: int,
    present: list[str],
    seconds: dict[str, float],
) -> DataFrame:
    """(model, variant, user_id, items) of the models ranked straight from the test features."""
    as_of = history.as_of
    learned = store.read_table(S.RANKER_SCORES).filter(F.col(S.AS_OF) == F.lit(as_of))
    frames = [
        learned.select(
            F.lit(LEARNED).alias(MODEL),
            S.USER_ID,
            S.ITEM_ID,
            F.col(S.LEARNED_SCORE).alias("score"),
            # the new-items model orders the new variant, as in the product's new-items mode
            F.coalesce(S.LEARNED_NEW_SCORE, S.LEARNED_SCORE).alias("_score_new"),
        )
    ]
    if settings.evaluation.ablations:
        frames += _ablation_scores(
            store, settings.discriminator, settings.evaluation, test, note, present, seconds
        )
    frames += _baseline_scores(store, settings, test, history, k, present)
    purchases = history.purchases()
    frames.append(
        decayed_buy_again(purchases, as_of, half_life).select(
            F.lit(DECAYED).alias(MODEL), S.USER_ID, S.ITEM_ID, "score"
        )
    )
    rows = _union(
        [f if "_score_new" in f.columns else f.withColumn("_score_new", F.col("score")) for f in frames]
    )
    bought = bought_pairs(purchases).withColumn("_bought", F.lit(True))
    flagged = rows.join(bought, [S.USER_ID, S.ITEM_ID], "left")
    both = flagged.withColumn(VARIANT, F.lit(VARIANT_ALL)).unionByName(
        flagged.filter(F.col("_bought").isNull())
        .withColumn(VARIANT, F.lit(VARIANT_NEW))
        .withColumn("score", F.col("_score_new"))
    )
    return top_k_lists(both, k)


def _ablation_scores(
    store: TableStore,
    ranker: DiscriminatorSettings,
    evaluation: EvaluationSettings,
    test: DataFrame,
    note: ModelNote,
    present: list[str],
    seconds: dict[str, float],
) -> list[DataFrame]:
    """(model, user_id, item_id, score) of each ablation's refit, on one training set read once."""
    cutoffs = ablation_cutoffs(note, evaluation)
    started = time.perf_counter()
    training = training_set(store, cutoffs, ranker).localCheckpoint(eager=True)  # read once for all
    seconds["ablations' training set"] = time.perf_counter() - started
    frames = []
    for ablation in ablations(ranker, present, refit=len(cutoffs) < len(note.cutoffs)):
        started = time.perf_counter()
        scored = ablation_scores(training, ranker, test, ablation).localCheckpoint(eager=True)
        seconds[ablation.name] = time.perf_counter() - started
        frames.append(scored.select(F.lit(ablation.name).alias(MODEL), S.USER_ID, S.ITEM_ID, "score"))
    return frames


def _baseline_scores(
    store: TableStore, settings: Settings, test: DataFrame, history: History, k: int, present: list[str]
) -> list[DataFrame]:
    """(model, user_id, item_id, score) of the single-source baselines: the test features' source ranks
    for the sources the product has, the candidates stage's output for those it has not."""
    baselines = settings.evaluation.baselines
    ranked = [
        test.filter(F.col(f"{b}_rank") < MISSING_RANK).select(
            F.lit(b).alias("source"), S.USER_ID, S.ITEM_ID, F.col(f"{b}_rank").alias("source_rank")
        )
        for b in baselines
        if b in present
    ]
    missing = [b for b in baselines if b not in present]
    if missing:
        made = baseline_candidates(store, settings.candidates, missing, history, k)
        ranked.append(made.select("source", S.USER_ID, S.ITEM_ID, "source_rank"))
    return [
        r.select(
            F.col("source").alias(MODEL),
            S.USER_ID,
            S.ITEM_ID,
            (-F.col("source_rank")).cast("double").alias("score"),
        )
        for r in ranked
    ]


CEILING = "recall_ceiling"  # metric of the rows model "candidates:<source>" (or "candidates:all sources")
HALF_LIFE = "half_life"  # metric of the row of the decayed buy-again: the half life it used


def evaluate(
    spark: SparkSession,
    store: TableStore,
    settings: Settings,
    book: StrategyBook,
    ctx: Context,
    run_id: str,
    horizon_days: int | None = None,
) -> EvaluationReport:
    """Every model of the module docstring in both variants -> ``metrics`` (one commit per run id and
    horizon; a rerun of both reports what it wrote and computes nothing)."""
    evaluation = settings.evaluation
    as_of, horizon = ctx.as_of, horizon_days or evaluation.horizon_days
    unknown = [b for b in evaluation.baselines if b not in S.CANDIDATE_SOURCES]
    if unknown:
        raise ConfigError(
            f"evaluation.baselines: {unknown} are not candidate sources; "
            f"valid choices: {list(S.CANDIDATE_SOURCES)}"
        )
    _required(store, as_of)
    note = _model_note(store, as_of)
    seconds: dict[str, float] = {}
    key = evaluation_key(run_id, horizon)
    if _already_evaluated(store, key):
        write = WriteResult(S.METRICS, store.version(S.METRICS), skipped=True)
    else:
        values = _measure(_Inputs(spark, store, settings, book, ctx, run_id, horizon, note), seconds)
        rows = values.select(
            F.lit(key).alias(S.RUN_ID),
            F.lit(as_of).cast("date").alias(S.AS_OF),
            MODEL,
            "metric",
            F.col("k").cast("int").alias("k"),
            F.lit(None).cast("int").alias(S.SEGMENT_ID),
            F.col("value").cast("double").alias("value"),
            VARIANT,
        )
        write = store.write_table(rows, S.METRICS, mode="append", run_id=key, stage="evaluate")
    return _report(store, key, as_of, horizon, evaluation, note, write, seconds)


def evaluation_key(run_id: str, horizon: int) -> str:
    """The run id of an evaluation's ``metrics`` rows: the stages' run id and the horizon (another horizon
    is another evaluation, not a rerun)."""
    return f"{run_id}-h{horizon}"


@dataclass(frozen=True)
class _Inputs:
    """What one evaluation reads: the warehouse, the settings and strategies, the date, the model."""

    spark: SparkSession
    store: TableStore
    settings: Settings
    book: StrategyBook
    ctx: Context
    run_id: str
    horizon: int
    note: ModelNote


def _measure(inputs: _Inputs, seconds: dict[str, float]) -> DataFrame:
    """(variant, model, metric, k, value) of every model, the recall ceiling and the half life picked."""
    spark, store, settings, note = inputs.spark, inputs.store, inputs.settings, inputs.note
    as_of, horizon, evaluation = inputs.ctx.as_of, inputs.horizon, settings.evaluation
    events, items = store.read_table(S.EVENTS), store.read_table(S.ITEMS)
    truth = protocol_truth(events, items, as_of, as_of + dt.timedelta(days=horizon))
    truth_lists = truth.lists.persist(StorageLevel.MEMORY_AND_DISK)
    test = store.read_table(S.RANKER_FEATURES).filter(F.col(S.AS_OF) == F.lit(as_of))
    # only the evaluated users' candidates: the others have no truth to score against (the learned
    # ranker scored all of them already; the refits and the lists need not)
    evaluated = truth_lists.select(S.USER_ID).distinct()
    test = test.join(evaluated, S.USER_ID, "left_semi").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        k_max = max(evaluation.ks)
        started = time.perf_counter()
        half_life, _ = pick_half_life(events, items, as_of, horizon, evaluation.half_lives, evaluation.ks[0])
        seconds["half life"] = time.perf_counter() - started
        present = present_parts(test)
        started = time.perf_counter()
        history = History.of(events, items, as_of)
        ranking = RankingInputs.read(store, history)
        rules = _rule_lists(spark, ranking, inputs.book, inputs.ctx, k_max, inputs.run_id)
        rules = rules.localCheckpoint(eager=True)
        seconds["product and blend lists"] = time.perf_counter() - started
        scored = _scored_lists(store, settings, test, history, note, half_life, k_max, present, seconds)
        started = time.perf_counter()
        values = list_metrics(rules.unionByName(scored), truth_lists, evaluation.ks)
        extra = [
            (variant, f"candidates:{source}", CEILING, None, share)
            for (variant, source), share in recall_ceiling(test, truth_lists).items()
        ]
        extra.append((VARIANT_ALL, DECAYED, HALF_LIFE, None, float(half_life)))
        schema = "variant string, model string, metric string, k int, value double"
        values = values.unionByName(spark.createDataFrame(extra, schema)).localCheckpoint(eager=True)
        seconds["metrics"] = time.perf_counter() - started
        return values
    finally:
        test.unpersist()
        truth_lists.unpersist()


def _already_evaluated(store: TableStore, run_id: str) -> bool:
    if not store.exists(S.METRICS):
        return False
    return bool(store.read_table(S.METRICS).filter(F.col(S.RUN_ID) == F.lit(run_id)).limit(1).count())


def _report(
    store: TableStore,
    run_id: str,
    as_of: dt.date,
    horizon: int,
    evaluation: EvaluationSettings,
    note: ModelNote,
    write: WriteResult,
    seconds: dict[str, float],
) -> EvaluationReport:
    rows = (
        store.read_table(S.METRICS)
        .filter((F.col(S.RUN_ID) == F.lit(run_id)) & F.col(S.SEGMENT_ID).isNull())
        .select(VARIANT, MODEL, "metric", "k", "value")
        .collect()  # models x variants x metrics x ks: a few hundred rows
    )
    headline = {
        (r[VARIANT], r[MODEL], r["metric"], r["k"]): float(r["value"]) for r in rows if r["k"] is not None
    }
    users = {
        r[VARIANT]: int(r["value"]) for r in rows if r["metric"] == USERS_EVALUATED and r[MODEL] == PRODUCT
    }
    ceiling = {
        (r[VARIANT], r[MODEL].split(":", 1)[1]): float(r["value"]) for r in rows if r["metric"] == CEILING
    }
    half = [float(r["value"]) for r in rows if r["metric"] == HALF_LIFE]
    order = report_order(evaluation)
    present = {m for _, m, _, _ in headline}
    models = [m for m in order if m in present]
    return EvaluationReport(
        as_of,
        horizon,
        list(evaluation.ks),
        models,
        users,
        headline,
        ceiling,
        half[0] if half else None,
        note.importances,
        write,
        seconds,
    )
