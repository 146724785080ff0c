"""Feedback replay on the real events (issue 6): ``genre-spark replay --from D --weeks N``.

For week w = 0..N-1 and T = D + 7w (``replay.window_days`` apart):

1. the dated stages for T (features, segments, candidates, scoring when a scorer is enabled, and the
   discriminator when the book's strategies rank by the learned ranker and ``replay.ranker`` is ``book``;
   ``blend`` orders every strategy by its hand-set blend instead) under the week's run id
   ``replay-<T>-<config hash>`` (ingest and enrich once first, when their tables are missing); the segment
   model is fitted (per ``segments.refit``) in the first week only and reused by the later weeks (``refit:
   if_missing``: cheaper, and the same users' kind keeps its label);
2. the ``feedback`` stage of T, as a nightly run does it: the purchases of ``[T - window, T)`` of the items
   on the lists served the week before become ``feedback_events`` and update ``strategy_state``
   (:func:`genre_spark.feedback.run_feedback`, window ``replay.window_days``);
3. the **adaptive** policy serves the lists: the ranking stage with Thompson sampling per segment from
   ``strategy_state`` as known on T (:func:`genre_spark.feedback.adaptive_chooser_from_store`) writes the
   ``recommendations`` partition of T;
4. each **fixed** policy (``replay.strategies``; null = every strategy the adaptive policy may pick) ranks
   the same candidates with every segment forced to that strategy; those lists go to ``replay_lists`` only
   (partition ``(as_of, policy)``, beside a copy of the served lists under policy ``adaptive``), never to
   ``recommendations``;
5. every policy is scored on the same purchases of ``[T, T + window)``: conversion (served items bought /
   served items, and users who bought a served item / users served) and NDCG@k
   (:func:`genre_spark.metrics.evaluate_lists`, every user who bought a product in the window is evaluated;
   no list = 0) -> ``replay_report`` (partition T).

After the last week, one more feedback stage (as of D + 7N) feeds its lists back too.
At the end the report is printed and written as Markdown and PNG under ``<warehouse>/_reports/``. Every
write carries the week's run id, so rerunning a replay commits nothing new.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import __version__
from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings, Settings, default_run_id
from genre_spark.errors import ConfigError
from genre_spark.feedback import (
    FeedbackReport,
    adaptive_chooser_from_store,
    feedback_from_purchases,
    run_feedback,
)
from genre_spark.history import History, bought_pairs, purchases_between
from genre_spark.metrics import (
    evaluate_lists,
    item_popularity,
    purchase_lists,
    ranked_lists,
)
from genre_spark.pipeline import RunContext, missing_undated, progress, run_stages, stages_before
from genre_spark.ranking import Chooser, RankingInputs, rank, run_ranking
from genre_spark.storage import TableStore
from genre_spark.strategy import StrategyBook, context_for, with_ranker

STAGE = "replay"  # the writing stage of this module's writes
ADAPTIVE = "adaptive"  # the policy name of the served (Thompson) lists


@dataclass(frozen=True)
class PolicyWeek:
    week: int
    as_of: dt.date
    policy: str
    users_served: int
    impressions: int
    purchased_items: int
    buyers: int
    ndcg: float
    strategies: str

    @property
    def item_conversion(self) -> float:
        return self.purchased_items / self.impressions if self.impressions else 0.0

    @property
    def user_conversion(self) -> float:
        return self.buyers / self.users_served if self.users_served else 0.0


@dataclass(frozen=True)
class ReplayReport:
    start: dt.date
    weeks: int
    k: int
    rows: tuple[PolicyWeek, ...]
    feedback: tuple[FeedbackReport, ...]
    files: tuple[str, ...]  # the Markdown and PNG reports

    def table(self) -> str:
        """The report as a Markdown table (also what the CLI prints)."""
        head = (
            f"| week | as of | policy | users | served items | bought | item conv. | buyers | user conv. "
            f"| NDCG@{self.k} | strategies |"
        )
        lines = [head, "|" + "---|" * 11]
        for r in self.rows:
            lines.append(
                f"| {r.week} | {r.as_of} | {r.policy} | {r.users_served:,} | {r.impressions:,} | "
                f"{r.purchased_items:,} | {r.item_conversion:.2%} | {r.buyers:,} | {r.user_conversion:.2%} | "
                f"{r.ndcg:.4f} | {r.strategies} |"
            )
        return "\n".join(lines)

    def conversion(self, policy: str, first_week: int = 0) -> float:
        """Served items bought / served items of ``policy``, pooled over the weeks from ``first_week``."""
        mine = [r for r in self.rows if r.policy == policy and r.week >= first_week]
        shown = sum(r.impressions for r in mine)
        return sum(r.purchased_items for r in mine) / shown if shown else 0.0

    def summary(self) -> str:
        """Per policy, the item conversion over all weeks and over the later half (where the adaptive policy
        should have learned), and the adaptive policy against the fixed ones' mean and the best of them."""
        later = self.weeks // 2
        policies = list(dict.fromkeys(r.policy for r in self.rows))
        lines = [
            f"| policy | item conv., all weeks | item conv., weeks {later}-{self.weeks - 1} |",
            "|---|---|---|",
        ]
        lines += [f"| {p} | {self.conversion(p):.3%} | {self.conversion(p, later):.3%} |" for p in policies]
        fixed = {p: self.conversion(p, later) for p in policies if p != ADAPTIVE}
        best = max(fixed, key=lambda p: fixed[p]) if fixed else None
        if best is not None and fixed[best] > 0:
            mine, mean = self.conversion(ADAPTIVE, later), sum(fixed.values()) / len(fixed)
            lines.append(
                f"\nweeks {later}-{self.weeks - 1}: adaptive {mine:.3%}, mean of the fixed strategies "
                f"{mean:.3%} ({mine / mean - 1:+.1%}), best fixed ({best}) {fixed[best]:.3%} "
                f"({mine / fixed[best] - 1:+.1%})"
            )
        return "\n".join(lines)

    def format(self) -> str:
        files = "".join(f"\n  report: {f}" for f in self.files)
        return f"replay from {self.start}, {self.weeks} week(s):\n{self.table()}\n\n{self.summary()}{files}"


def week_run_id(settings: Settings, as_of: dt.date) -> str:
    """The run id of a replayed week (distinct from a normal run of the same date and config)."""
    return f"replay-{default_run_id(settings, as_of)}"


def fixed_policies(book: StrategyBook, settings: Settings) -> list[str]:
    """``replay.strategies``, checked against the book; null = every strategy the adaptive policy may pick."""
    names = settings.replay.strategies
    if names is None:
        if book.adaptive is None:
            return list(book.strategies)
        listed = [*book.adaptive.allowed.values(), book.adaptive.default_allowed]
        return list(dict.fromkeys(n for allowed in listed for n in allowed))
    unknown = [n for n in names if n not in book.strategies]
    if unknown:
        raise ConfigError(
            f"replay.strategies names unknown strategy {unknown}; valid choices: {sorted(book.strategies)}"
        )
    if ADAPTIVE in names:
        raise ConfigError(f"replay.strategies: '{ADAPTIVE}' is the name of the adaptive policy")
    return list(dict.fromkeys(names))


def fixed_chooser(name: str) -> Chooser:
    """Every segment gets strategy ``name``."""
    return lambda segment_id, segment_label: name


def _check_window(store: TableStore, start: dt.date, weeks: int, window_days: int) -> None:
    last = store.read_table(S.EVENTS).agg(F.max(S.EVENT_TS)).first()
    if last is None or last[0] is None:
        raise ConfigError("replay: the events table is empty")
    end = start + dt.timedelta(days=7 * (weeks - 1) + window_days)
    if end > last[0].date() + dt.timedelta(days=1):
        raise ConfigError(
            f"replay: the feedback window of week {weeks - 1} ends {end}, after the last event "
            f"({last[0].date()}); use an earlier --from or fewer --weeks"
        )


def _lists(ctx: RunContext, choose: Chooser) -> DataFrame:
    """``recommendations`` rows of T with ``choose`` deciding each segment's strategy (not written)."""
    return rank(
        ctx.spark,
        RankingInputs.read(ctx.store, ctx.history),
        ctx.strategies,
        ctx.context,
        ctx.settings.ranking.k,
        ctx.run_id,
        f"genre-spark {__version__}; replay",
        choose,
    )


def _write_lists(ctx: RunContext, lists: DataFrame, policy: str) -> None:
    ctx.store.write_table(
        lists.withColumn(S.POLICY, F.lit(policy)),
        S.REPLAY_LISTS,
        mode="overwrite",
        run_id=ctx.run_id,
        stage=STAGE,
        partition_by=[S.AS_OF, S.POLICY],
        replace_where={S.AS_OF: ctx.as_of, S.POLICY: policy},
    )


def score_policies(
    store: TableStore, as_of: dt.date, end: dt.date, week: int, k: int, mixes: dict[str, str]
) -> list[PolicyWeek]:
    """Conversion and NDCG@k of every policy's lists of ``as_of`` (``replay_lists``) on the purchases of
    ``[as_of, end)``. One aggregate row per policy reaches the driver."""
    lists = store.read_table(S.REPLAY_LISTS).where(F.col(S.AS_OF) == F.lit(as_of))
    events = store.read_table(S.EVENTS)
    items = store.read_table(S.ITEMS)
    # the policy rides in run_id through feedback_from_purchases
    window = (end - as_of).days
    feedback = feedback_from_purchases(lists.withColumn(S.RUN_ID, F.col(S.POLICY)), events, window, end)
    bought = F.col(S.EVENT_TYPE) == S.PURCHASE
    counts = {
        r[S.RUN_ID]: r
        for r in feedback.groupBy(S.RUN_ID)
        .agg(
            F.countDistinct(S.USER_ID).alias("users"),
            F.sum((F.col(S.EVENT_TYPE) == S.IMPRESSION).cast("long")).alias("impressions"),
            F.sum(bought.cast("long")).alias("purchased"),
            F.countDistinct(F.when(bought, F.col(S.USER_ID))).alias("buyers"),
        )
        .collect()  # one row per policy
    }
    truth = purchase_lists(bought_pairs(purchases_between(events, items, as_of, end))).persist()
    catalog = items.where(F.col(S.IS_PRODUCT)).select(S.ITEM_ID).persist()
    popularity = item_popularity(bought_pairs(History.of(events, items, as_of).purchases())).persist()
    try:
        out = []
        for policy, mix in mixes.items():
            metrics = evaluate_lists(
                ranked_lists(lists.where(F.col(S.POLICY) == policy)),
                truth,
                ks=[k],
                catalog=catalog,
                popularity=popularity,
                segments=None,
                run_id=STAGE,
                as_of=as_of,
                model=policy,
                variant="all",
            )
            ndcg = metrics.where((F.col("metric") == "ndcg") & (F.col("k") == k)).select("value").first()
            c = counts.get(policy)
            out.append(
                PolicyWeek(
                    week,
                    as_of,
                    policy,
                    int(c["users"]) if c else 0,
                    int(c["impressions"] or 0) if c else 0,
                    int(c["purchased"] or 0) if c else 0,
                    int(c["buyers"]) if c else 0,
                    float(ndcg[0]) if ndcg else 0.0,
                    mix,
                )
            )
        return out
    finally:
        for df in (truth, catalog, popularity):
            df.unpersist()


def _report_rows(spark: SparkSession, rows: Sequence[PolicyWeek], run_id: str, k: int) -> DataFrame:
    return spark.createDataFrame(
        [
            (
                run_id,
                r.as_of,
                r.week,
                r.policy,
                r.users_served,
                r.impressions,
                r.purchased_items,
                r.item_conversion,
                r.buyers,
                r.user_conversion,
                r.ndcg,
                k,
                r.strategies,
            )
            for r in rows
        ],
        S.CONTRACTS[S.REPLAY_REPORT],
    )


def replay(
    spark: SparkSession,
    store: TableStore,
    settings: Settings,
    book: StrategyBook,
    start: dt.date,
    weeks: int | None = None,
    context_hour: int | None = None,
) -> ReplayReport:
    """The replay of ``weeks`` (default ``replay.weeks``) weeks from ``start``; see the module docstring."""
    n_weeks = weeks or settings.replay.weeks
    if n_weeks <= 0:
        raise ConfigError(f"--weeks must be positive, got {n_weeks}")
    window, ndcg_k = settings.replay.window_days, settings.replay.ndcg_k
    # the arms are the book's strategies, each with its own ranker (the learned ones need the discriminator
    # every week) or, with replay.ranker: blend, each by its hand-set blend
    learned = settings.replay.ranker == "book" and settings.discriminator.enabled
    if not learned:
        book = with_ranker(book, "blend")
    fixed = fixed_policies(book, settings)
    hours = settings.features.hour_bands

    # the first week's segment model is reused afterwards; feedback arrives for a week's lists at the next
    reuse = settings.model_copy(
        update={"segments": settings.segments.model_copy(update={"refit": "if_missing"})}
    )
    weekly = settings.feedback.model_copy(update={"window_days": window})

    def context_of(week: int) -> RunContext:
        as_of = start + dt.timedelta(days=7 * week)
        ctx = context_for(as_of, context_hour, hours)
        run_id = week_run_id(settings, as_of)
        return RunContext(spark, store, settings if week == 0 else reuse, as_of, run_id, book, ctx)

    undated = missing_undated(store)
    if undated:
        run_stages(context_of(0), undated)
    _check_window(store, start, n_weeks, window)
    dated = stages_before("feedback" if learned else "discriminator", scored=bool(settings.scoring.scorers()))

    rows: list[PolicyWeek] = []
    feedback: list[FeedbackReport] = []
    for week in range(n_weeks):
        ctx = context_of(week)
        progress(f"replay week {week}: as of {ctx.as_of}, run {ctx.run_id}")
        run_stages(ctx, dated)
        feedback.append(_feedback(ctx, weekly))
        rows.extend(_replay_week(ctx, week, fixed))
    feedback.append(_feedback(context_of(n_weeks), weekly))
    report = ReplayReport(start, n_weeks, ndcg_k, tuple(rows), tuple(feedback), ())
    return ReplayReport(start, n_weeks, ndcg_k, tuple(rows), tuple(feedback), write_files(store, report))


def _feedback(ctx: RunContext, settings: FeedbackSettings) -> FeedbackReport:
    """The feedback stage of the week's run (on the lists of the week before)."""
    fb = run_feedback(
        ctx.store,
        settings,
        ctx.as_of,
        ctx.run_id,
        hour_band=ctx.context.hour_band,
        fold_item_case=ctx.settings.ingest.fold_item_id_case,
    )
    progress(f"replay: {fb.format()}")
    return fb


def _replay_week(ctx: RunContext, week: int, fixed: list[str]) -> list[PolicyWeek]:
    """One week: the adaptive lists served, the fixed strategies' lists beside them, every policy scored on
    the week's window and written to the report."""
    spark, store, settings, book = ctx.spark, ctx.store, ctx.settings, ctx.strategies
    window, k, ndcg_k = settings.replay.window_days, settings.ranking.k, settings.replay.ndcg_k
    choose = adaptive_chooser_from_store(store, book, settings.feedback, ctx.context)
    served = run_ranking(spark, store, ctx.history, book, ctx.context, k, ctx.run_id, choose)
    progress(f"replay week {week}: adaptive lists served; {served.format()}")
    on_date = F.col(S.AS_OF) == F.lit(ctx.as_of)
    _write_lists(ctx, store.read_table(S.RECOMMENDATIONS).where(on_date), ADAPTIVE)
    mixes = {ADAPTIVE: ", ".join(f"{n} {s:.0%}" for n, s in sorted(served.strategy_share.items()))}
    for name in fixed:
        _write_lists(ctx, _lists(ctx, fixed_chooser(name)), name)
        mixes[name] = name
    progress(f"replay week {week}: fixed-strategy lists in {S.REPLAY_LISTS}: {', '.join(fixed)}")
    scored = score_policies(store, ctx.as_of, ctx.as_of + dt.timedelta(days=window), week, ndcg_k, mixes)
    report = _report_rows(spark, scored, ctx.run_id, ndcg_k)
    store.replace_date(report, S.REPLAY_REPORT, as_of=ctx.as_of, run_id=ctx.run_id, stage=STAGE)
    return scored


def write_files(store: TableStore, report: ReplayReport) -> tuple[str, ...]:
    """``replay-<start>-<weeks>w.md`` and ``.png`` under the warehouse's reports (local or remote)."""
    name = f"replay-{report.start}-{report.weeks}w"
    text = f"# Feedback replay from {report.start}, {report.weeks} week(s)\n\n{report.table()}\n"
    text += f"\n{report.summary()}\n"
    text += f"\n![conversion and NDCG per week]({name}.png)\n"
    md = store.write_report(f"{name}.md", text.encode("utf-8"))
    return (md, store.write_report(f"{name}.png", _plot(report)))


def _plot(report: ReplayReport) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r.policy for r in report.rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [
        ("served items bought", lambda r: r.item_conversion),
        ("users who bought a served item", lambda r: r.user_conversion),
        (f"NDCG@{report.k}", lambda r: r.ndcg),
    ]
    for ax, (title, value) in zip(axes, panels, strict=True):
        for policy in policies:
            mine = [r for r in report.rows if r.policy == policy]
            style = {"linewidth": 3.0, "color": "black"} if policy == ADAPTIVE else {"linewidth": 1.3}
            ax.plot([str(r.as_of) for r in mine], [value(r) for r in mine], marker="o", label=policy, **style)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Feedback replay from {report.start}: adaptive (Thompson) policy vs fixed strategies")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()
