"""Offline evaluation: the full product against baselines on a temporal split, written to ``metrics``.

Protocol: every model is fitted on events before ``as_of`` (the stages features, segments, candidates,
scoring ran for that date); each model ranks lists of ``max(ks)`` items through the same ranking code
(a baseline is a strategy forced on every user); the lists are compared with the products each user
bought in ``[as_of, as_of + horizon)``. Users: those with segments as of the date (a purchase before it).

Variants: *all* (repeat purchases count) and *new*: every strategy also excludes everything the user
bought before ``as_of`` (so lists hold k new items) and those items leave the ground truth.
The metric definitions and denominators are in :mod:`genre_spark.metrics`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import __version__
from genre_spark import schemas as S
from genre_spark.config import EvaluationSettings
from genre_spark.errors import ConfigError, TableNotFoundError
from genre_spark.metrics import (
    VARIANT_ALL,
    VARIANT_NEW,
    evaluate_lists,
    exclude_bought_before,
    item_popularity,
    purchase_lists,
    purchases_between,
    ranked_lists,
)
from genre_spark.ranking import Chooser, rank, rule_chooser
from genre_spark.storage import TableStore, WriteResult
from genre_spark.strategy import Context, StrategyBook

FULL = "full"  # the product: selection rules, every source and scorer
LEARNED = "full_discriminator"  # the same strategies ranked by the discriminator's probability
HEADLINE = ("ndcg", "recall", "map", "hit_rate", "coverage", "novelty")


def new_items_book(book: StrategyBook) -> StrategyBook:
    """The same strategies, each also excluding every item the user bought before the as-of date."""
    strategies = {
        name: s.model_copy(
            update={
                "rules": s.rules.model_copy(
                    update={"exclude_recently_bought_days": 365_000, "exclude_recently_bought_categories": []}
                )
            }
        )
        for name, s in book.strategies.items()
    }
    return book.model_copy(update={"strategies": strategies})


def learned_book(book: StrategyBook) -> StrategyBook:
    """The same strategies, each ranking by the discriminator's probability."""
    strategies = {
        name: s.model_copy(update={"ranker": "discriminator"}) for name, s in book.strategies.items()
    }
    return book.model_copy(update={"strategies": strategies})


def fixed(strategy: str) -> Chooser:
    return lambda _segment_id, _label: strategy


@dataclass(frozen=True)
class EvaluationInputs:
    """Everything the models read, as of one date: nothing at or after ``as_of`` except ``future``."""

    candidates: DataFrame
    scores: DataFrame | None
    probabilities: DataFrame | None  # the discriminator's, when it ran for the date
    segments: DataFrame  # user_id, segment_id, segment_label
    history_events: DataFrame  # events strictly before as_of
    items: DataFrame
    future: DataFrame  # (user_id, item_id) products bought in [as_of, as_of + horizon) by the segment users


def evaluation_inputs(store: TableStore, as_of: dt.date, horizon_days: int) -> EvaluationInputs:
    on_date = F.col(S.AS_OF) == F.lit(as_of)
    for table in (S.USER_SEGMENTS, S.CANDIDATES):
        if not store.exists(table):
            raise TableNotFoundError(table, store.table_path(table))
    segments = store.read_table(S.USER_SEGMENTS).filter(on_date)
    events = store.read_table(S.EVENTS)
    items = store.read_table(S.ITEMS)
    cutoff = F.lit(as_of.isoformat()).cast("timestamp")
    users = segments.select(S.USER_ID)
    future = purchases_between(events, as_of, as_of + dt.timedelta(days=horizon_days), items)
    scores = store.read_table(S.SCORES).filter(on_date) if store.exists(S.SCORES) else None
    learned = store.read_table(S.RANKER_SCORES).filter(on_date) if store.exists(S.RANKER_SCORES) else None
    return EvaluationInputs(
        candidates=store.read_table(S.CANDIDATES).filter(on_date),
        scores=scores,
        probabilities=learned,
        segments=segments.select(S.USER_ID, S.SEGMENT_ID, S.SEGMENT_LABEL, "model_run_id"),
        history_events=events.filter(F.col(S.EVENT_TS) < cutoff),
        items=items,
        future=future.join(users, S.USER_ID, "left_semi"),
    )


def _frames(inputs: EvaluationInputs) -> list[DataFrame]:
    return [df for df in vars(inputs).values() if df is not None]


def _persisted(inputs: EvaluationInputs) -> EvaluationInputs:
    """The inputs cached once for the ten rankings that read them."""

    def keep(df: DataFrame) -> DataFrame:
        return df.persist(StorageLevel.MEMORY_AND_DISK)

    return dataclasses.replace(
        inputs,
        candidates=keep(inputs.candidates),
        scores=None if inputs.scores is None else keep(inputs.scores),
        probabilities=None if inputs.probabilities is None else keep(inputs.probabilities),
        segments=keep(inputs.segments),
        history_events=keep(inputs.history_events),
        future=keep(inputs.future),
    )


def model_lists(
    spark: SparkSession,
    inputs: EvaluationInputs,
    book: StrategyBook,
    ctx: Context,
    k: int,
    run_id: str,
    choose: Chooser,
) -> DataFrame:
    """(user_id, items): one model's top-k lists, best first. Reads nothing at or after ``ctx.as_of``."""
    recs = rank(
        spark,
        inputs.candidates,
        inputs.segments,
        inputs.history_events,
        inputs.items,
        book,
        ctx,
        k,
        run_id,
        f"genre-spark {__version__}",
        inputs.scores,
        choose,
        inputs.probabilities,
    )
    return ranked_lists(recs)


@dataclass(frozen=True)
class EvaluationReport:
    as_of: dt.date
    horizon_days: int
    ks: list[int]
    models: list[str]
    users_evaluated: dict[str, int]  # variant -> users with at least one relevant item
    headline: dict[tuple[str, str, str, int], float]  # (variant, model, metric, k) -> value, all users
    write: WriteResult
    chart: str | None

    def value(self, variant: str, model: str, metric: str, k: int) -> float:
        return self.headline.get((variant, model, metric, k), float("nan"))

    def best_baseline(self, variant: str, metric: str = "ndcg", k: int = 10) -> tuple[str, float]:
        baselines = [m for m in self.models if m not in (FULL, LEARNED)]
        best = max(baselines, key=lambda m: self.value(variant, m, metric, k))
        return best, self.value(variant, best, metric, k)

    def format(self) -> str:
        lines = [f"evaluation as of {self.as_of}, purchases of the next {self.horizon_days} days:"]
        columns = [(m, k) for m in HEADLINE for k in self.ks]
        header = f"  {'model':<24}" + "".join(f"{f'{m}@{k}':>13}" for m, k in columns)
        for variant in (VARIANT_ALL, VARIANT_NEW):
            users = self.users_evaluated.get(variant, 0)
            lines.append(f" variant '{variant}' ({users:,} users with a purchase in the window)")
            lines.append(header)
            for model in self.models:
                cells = "".join(f"{self.value(variant, model, m, k):>13.4f}" for m, k in columns)
                lines.append(f"  {model:<24}{cells}")
            k0 = self.ks[0]
            name, best = self.best_baseline(variant, k=k0)
            for model in (m for m in self.models if m in (FULL, LEARNED)):
                value = self.value(variant, model, "ndcg", k0)
                lift = (value / best - 1) if best > 0 else float("nan")
                lines.append(f"  {model} vs the best baseline ({name}) on ndcg@{k0}: {lift:+.1%}")
        if self.chart:
            lines.append(f"  chart: {self.chart}")
        return "\n".join(lines)


def evaluate(
    spark: SparkSession,
    store: TableStore,
    book: StrategyBook,
    ctx: Context,
    settings: EvaluationSettings,
    run_id: str,
    horizon_days: int | None = None,
) -> EvaluationReport:
    """Rank with the full product and each baseline, in both variants, and write ``metrics``."""
    horizon = horizon_days or settings.horizon_days
    unknown = [b for b in settings.baselines if b not in book.strategies]
    if unknown:
        raise ConfigError(
            f"evaluation.baselines: {unknown} are not strategies; valid choices: {sorted(book.strategies)}"
        )
    as_of, k_max = ctx.as_of, max(settings.ks)
    if _already_evaluated(store, run_id):  # a rerun of the run id reports what it wrote, computes nothing
        version = store.version(S.METRICS)
        done = WriteResult(S.METRICS, version, skipped=True)
        models = [
            r.model
            for r in store.read_table(S.METRICS)
            .filter(F.col(S.RUN_ID) == F.lit(run_id))
            .select("model")
            .distinct()
            .collect()
        ]  # a handful of rows
        ordered = [m for m in (FULL, LEARNED, *settings.baselines) if m in models]
        return _report(store, run_id, as_of, horizon, settings.ks, ordered, done)
    inputs = _persisted(evaluation_inputs(store, as_of, horizon))
    try:
        history = purchases_between(inputs.history_events, None, as_of, inputs.items).join(
            inputs.segments.select(S.USER_ID), S.USER_ID, "left_semi"
        )
        catalog = inputs.items.filter(F.col(S.IS_PRODUCT)).select(S.ITEM_ID)
        popularity = item_popularity(history)
        truth = {
            VARIANT_ALL: purchase_lists(inputs.future),
            VARIANT_NEW: exclude_bought_before(purchase_lists(inputs.future), history),
        }
        models = [FULL, *([LEARNED] if inputs.probabilities is not None else []), *settings.baselines]
        frames = []
        for variant in (VARIANT_ALL, VARIANT_NEW):
            variant_book = new_items_book(book) if variant == VARIANT_NEW else book
            for model in models:
                model_book = learned_book(variant_book) if model == LEARNED else variant_book
                choose = fixed(model) if model in settings.baselines else rule_chooser(model_book, ctx)
                lists = model_lists(spark, inputs, model_book, ctx, k_max, run_id, choose)
                frames.append(
                    evaluate_lists(
                        lists,
                        truth[variant],
                        ks=settings.ks,
                        catalog=catalog,
                        popularity=popularity,
                        segments=inputs.segments,
                        run_id=run_id,
                        as_of=as_of,
                        model=model,
                        variant=variant,
                    )
                )
        metrics = frames[0]
        for frame in frames[1:]:
            metrics = metrics.unionByName(frame)
        write = store.write_table(metrics, S.METRICS, mode="append", run_id=run_id, stage="evaluate")
    finally:
        for df in _frames(inputs):
            df.unpersist()
    return _report(store, run_id, as_of, horizon, settings.ks, models, write)


def _already_evaluated(store: TableStore, run_id: str) -> bool:
    if not store.exists(S.METRICS):
        return False
    return bool(store.read_table(S.METRICS).filter(F.col(S.RUN_ID) == F.lit(run_id)).limit(1).count())


def _report(
    store: TableStore,
    run_id: str,
    as_of: dt.date,
    horizon: int,
    ks: Sequence[int],
    models: list[str],
    write: WriteResult,
) -> EvaluationReport:
    rows = (
        store.read_table(S.METRICS)
        .filter((F.col(S.RUN_ID) == F.lit(run_id)) & F.col(S.SEGMENT_ID).isNull())
        .select("variant", "model", "metric", "k", "value")
        .collect()  # models x variants x metrics x ks: a few hundred rows
    )
    headline = {(r.variant, r.model, r.metric, r.k): float(r.value) for r in rows if r.k is not None}
    users = {r.variant: int(r.value) for r in rows if r.metric == "users_evaluated" and r.model == FULL}
    report = EvaluationReport(as_of, horizon, list(ks), models, users, headline, write, None)
    return dataclasses.replace(report, chart=_chart(store, report, run_id))


def _chart(store: TableStore, report: EvaluationReport, run_id: str) -> str | None:
    """Bars of ndcg and recall at the first k per model, one panel per variant (PNG beside the tables)."""
    try:
        path = store.report_path(f"evaluation_{run_id}.png")
    except ValueError:  # remote warehouse: no local report folder
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report.ks[0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    width = 0.4
    for ax, variant in zip(axes, (VARIANT_ALL, VARIANT_NEW), strict=True):
        xs = range(len(report.models))
        for offset, metric in ((-width / 2, "ndcg"), (width / 2, "recall")):
            values = [report.value(variant, m, metric, k) for m in report.models]
            ax.bar([x + offset for x in xs], values, width, label=f"{metric}@{k}")
        ax.set_xticks(list(xs), [m.replace("baseline_", "") for m in report.models], rotation=20)
        ax.set_title(f"variant '{variant}' ({report.users_evaluated.get(variant, 0):,} users)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"genre-spark evaluation as of {report.as_of}, next {report.horizon_days} days")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
