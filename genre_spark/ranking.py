"""Ranking: strategy per user, blend of normalised source scores, business rules, diversity, top-K.

Writes ``recommendations`` (partitioned by ``as_of``) with the sources behind each item and a short
explanation quoting the strongest source's evidence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from genre_spark import __version__
from genre_spark import schemas as S
from genre_spark.candidate_scores import normalised_score
from genre_spark.errors import RankerMissingError
from genre_spark.history import History, bought_pairs, days_before
from genre_spark.storage import TableStore, WriteResult
from genre_spark.strategy import Context, StrategyBook, is_new_items, select_strategy


@dataclass(frozen=True)
class RankingReport:
    as_of: dt.date
    users: int  # users with segments as of the date: those a list is due for
    short_lists: int  # users who got fewer than k items, none included (not enough eligible candidates)
    items_covered: int
    strategy_share: dict[str, float]
    k: int
    write: WriteResult

    def format(self) -> str:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in sorted(self.strategy_share.items()))
        return (
            f"ranking as of {self.as_of}: top {self.k} for {self.users:,} users "
            f"({self.short_lists:,} got fewer than {self.k}); "
            f"{self.items_covered:,} distinct items recommended\n"
            f"  strategies: {shares}"
        )


# (segment_id, segment_label) -> strategy name: the selection rules by default, a Thompson draw in the
# adaptive policy, a fixed strategy for a baseline.
Chooser = Callable[[int, str], str]


def rule_chooser(book: StrategyBook, ctx: Context) -> Chooser:
    """The selection rules of the strategy book, in this time context."""
    return lambda segment_id, label: select_strategy(book, segment_id, label, ctx)


def segment_strategies(segments: DataFrame, choose: Chooser) -> dict[int, str]:
    """segment_id -> strategy name: one decision per segment, on the driver."""
    distinct = segments.select(S.SEGMENT_ID, S.SEGMENT_LABEL).distinct().collect()  # one row per segment
    return {r[S.SEGMENT_ID]: choose(r[S.SEGMENT_ID], r[S.SEGMENT_LABEL]) for r in distinct}


def user_strategies(spark: SparkSession, segments: DataFrame, decisions: dict[int, str]) -> DataFrame:
    """(user_id, segment_id, strategy_id): each user gets their segment's decision."""
    table = spark.createDataFrame(list(decisions.items()), "segment_id int, strategy_id string")
    return segments.select(S.USER_ID, S.SEGMENT_ID).join(F.broadcast(table), S.SEGMENT_ID)


def campaign_table(spark: SparkSession, book: StrategyBook, chosen: set[str]) -> DataFrame | None:
    """(strategy_id, item_id, position, slots) for the ``chosen`` strategies that feature campaign items;
    None when none does (the ranking then skips the campaign steps)."""
    rows = [
        (name, item, position, book.strategies[name].rules.campaign_slots)
        for name in sorted(chosen)
        if book.strategies[name].rules.campaign_slots > 0
        for position, item in enumerate(book.strategies[name].rules.campaign_items)
    ]
    if not rows:
        return None
    return spark.createDataFrame(rows, "strategy_id string, item_id string, position int, slots int")


LEARNED_FLOOR = 1e-6  # blend weight of a source a learned strategy gives none: kept, never the explanation


@dataclass(frozen=True)
class StrategyTables:
    """The strategy book as small DataFrames (broadcast in joins)."""

    source_weights: DataFrame  # strategy_id, source, weight
    scorer_weights: DataFrame  # strategy_id, scorer, weight
    rules: DataFrame  # strategy_id, exclude_returned, recent_days, recent_categories, max_price_ratio, ...
    rankers: DataFrame  # strategy_id, ranker (blend | learned), new_items


def strategy_tables(spark: SparkSession, book: StrategyBook) -> StrategyTables:
    def weights(kind: str) -> DataFrame:
        return spark.createDataFrame(
            [
                (name, key, float(w))
                for name, s in book.strategies.items()
                for key, w in getattr(s, f"{kind}_weights").items()
            ],
            f"strategy_id string, {kind} string, weight double",
        )

    # a learned strategy keeps the candidates of every source (the ranker orders them); its weights only
    # pick the evidence the explanation quotes
    sources = spark.createDataFrame(
        [
            (name, source, float(s.source_weights.get(source, 0.0)) or LEARNED_FLOOR)
            for name, s in book.strategies.items()
            for source in S.CANDIDATE_SOURCES
            if s.ranker == "learned" or s.source_weights.get(source, 0.0) > 0
        ],
        "strategy_id string, source string, weight double",
    )

    rules = spark.createDataFrame(
        [
            (
                name,
                s.rules.exclude_returned,
                s.rules.exclude_recently_bought_days,
                s.rules.exclude_recently_bought_categories,
                s.rules.max_price_ratio,
                s.max_per_category,
            )
            for name, s in book.strategies.items()
        ],
        "strategy_id string, exclude_returned boolean, recent_days int, recent_categories array<int>, "
        "max_price_ratio double, max_per_category int",
    )
    rankers = spark.createDataFrame(
        [(name, s.ranker, is_new_items(s)) for name, s in book.strategies.items()],
        "strategy_id string, ranker string, new_items boolean",
    )
    return StrategyTables(sources, weights("scorer"), rules, rankers)


SOURCE_BITS = {name: 1 << i for i, name in enumerate(sorted(S.CANDIDATE_SOURCES))}


def blend(candidates: DataFrame, strategies: DataFrame, weights: DataFrame) -> DataFrame:
    """Per (user, item): sum over sources of weight x (score / the user's best score from that source), the
    sources that proposed it (sorted) and the detail of the one that weighed most (ties: by text).

    Over every candidate row, so no object aggregate: the sources are bits OR-ed into a long, named after
    the aggregation, and the detail is the max of (part, detail). ``collect_set`` and ``max_by`` made it
    the ranking stage's largest operator (benchmarks/results/profile_ranking.md)."""
    normalised = candidates.withColumn("_norm", normalised_score())
    weighted = (
        normalised.join(strategies, S.USER_ID)
        .join(F.broadcast(weights), [S.STRATEGY_ID, "source"])
        .filter(F.col("weight") > 0)
        .withColumn("_part", F.col("weight") * F.col("_norm"))
    )
    bit = F.coalesce(*[F.when(F.col("source") == n, F.lit(b)) for n, b in SOURCE_BITS.items()], F.lit(0))
    bits = F.col("_bits")
    names = F.array_compact(
        F.array(*[F.when(bits.bitwiseAND(b) != 0, F.lit(n)) for n, b in SOURCE_BITS.items()])
    )
    return (
        weighted.groupBy(S.USER_ID, S.ITEM_ID, S.SEGMENT_ID, S.STRATEGY_ID)
        .agg(
            F.sum("_part").alias("score"),
            F.bit_or(bit.cast("long")).alias("_bits"),
            F.max(F.struct("_part", "detail")).alias("_best"),
        )
        .select("*", names.alias("sources"), F.col("_best.detail").alias("explanation"))
        .drop("_bits", "_best")
    )


def add_scorer_scores(
    blended: DataFrame, scores: DataFrame, strategies: DataFrame, weights: DataFrame
) -> DataFrame:
    """Add weight x (min-max normalised score among the user's scored items) per scorer to the blend.

    Items a scorer did not reach (outside its top-N) gain nothing from it. When the scorers lift an
    item above where the sources alone put it, the explanation says which scorer and its score."""
    per_user = Window.partitionBy(S.USER_ID, "scorer")
    lo, hi = F.min("score").over(per_user), F.max("score").over(per_user)
    lm = (
        scores.withColumn("_norm", F.when(hi > lo, (F.col("score") - lo) / (hi - lo)).otherwise(F.lit(0.0)))
        .join(strategies.select(S.USER_ID, S.STRATEGY_ID), S.USER_ID)
        .join(F.broadcast(weights), [S.STRATEGY_ID, "scorer"])
        .filter(F.col("weight") > 0)
        .withColumn("_part", F.col("weight") * F.col("_norm"))
        .groupBy(S.USER_ID, S.ITEM_ID)
        .agg(
            F.sum("_part").alias("_lm"),
            F.max_by(
                F.format_string("moved up by %s (score %.2f)", "scorer", "score"), F.struct("_part", "scorer")
            ).alias("_why"),
        )
    )
    by_sources = Window.partitionBy(S.USER_ID).orderBy(F.desc("_base"), F.asc(S.ITEM_ID))
    by_final = Window.partitionBy(S.USER_ID).orderBy(F.desc("score"), F.asc(S.ITEM_ID))
    moved_up = F.col("_rank_after") < F.col("_rank_before")
    return (
        blended.withColumnRenamed("score", "_base")
        .join(lm, [S.USER_ID, S.ITEM_ID], "left")
        .withColumn("score", F.col("_base") + F.coalesce("_lm", F.lit(0.0)))
        .withColumn("_rank_before", F.row_number().over(by_sources))
        .withColumn("_rank_after", F.row_number().over(by_final))
        .withColumn(
            "explanation",
            F.when(moved_up, F.concat_ws("; ", "explanation", "_why")).otherwise(F.col("explanation")),
        )
        .select(*blended.columns)
    )


def apply_ranker(
    scored: DataFrame, learned: DataFrame, strategies: DataFrame, rankers: DataFrame
) -> DataFrame:
    """For strategies with ``ranker: learned``, the score becomes the learned ranker's (``learned``:
    ranker_scores rows); strategies in the new-items mode take the new-items model's score where there is
    one. Candidates the ranker did not score come last."""
    users = strategies.select(S.USER_ID, S.STRATEGY_ID).join(
        F.broadcast(rankers.filter(F.col("ranker") == "learned")), S.STRATEGY_ID
    )
    new_items = F.col("_new_items") & F.col(S.LEARNED_NEW_SCORE).isNotNull()
    score = F.when(new_items, F.col(S.LEARNED_NEW_SCORE)).otherwise(F.col(S.LEARNED_SCORE))
    return (
        scored.join(users.select(S.USER_ID, F.col("new_items").alias("_new_items")), S.USER_ID, "left")
        .join(
            learned.select(S.USER_ID, S.ITEM_ID, S.LEARNED_SCORE, S.LEARNED_NEW_SCORE),
            [S.USER_ID, S.ITEM_ID],
            "left",
        )
        .withColumn(
            "score",
            F.when(F.col("_new_items").isNotNull(), F.coalesce(score, F.lit(-1e9))).otherwise(F.col("score")),
        )
        .select(*scored.columns)
    )


def check_learned(book: StrategyBook, chosen: set[str], learned: DataFrame | None, as_of: dt.date) -> None:
    """A strategy that ranks by the learned ranker needs its scores for the date: fail, never fall back."""
    wanting = sorted(name for name in chosen if book.strategies[name].ranker == "learned")
    if wanting and learned is None:
        raise RankerMissingError(
            f"strategies {wanting} rank with the learned ranker (ranker: learned), but ranker_scores has "
            f"nothing as of {as_of}: run the discriminator stage for that date "
            "(discriminator.enabled: true), or give those strategies ranker: blend"
        )


def apply_rules(scored: DataFrame, history: History, rules: DataFrame) -> DataFrame:
    """Drop what the strategy's business rules forbid (returned items, recent purchases, too dear)."""
    returned = history.of_type(S.RETURN).select(S.USER_ID, S.ITEM_ID).distinct()
    purchases = history.of_type(S.PURCHASE)
    last_bought = purchases.groupBy(S.USER_ID, S.ITEM_ID).agg(
        days_before(history.as_of, F.max(S.EVENT_TS)).alias("_days_since")
    )
    typical_price = purchases.groupBy(S.USER_ID).agg(
        F.percentile_approx(S.UNIT_PRICE, 0.5, 1000).alias("_user_price")
    )
    catalog = history.products.select(S.ITEM_ID, S.CATEGORY_ID, F.col(S.UNIT_PRICE).alias("_item_price"))
    df = (
        scored.join(F.broadcast(rules), S.STRATEGY_ID)
        .join(F.broadcast(catalog), S.ITEM_ID, "left")
        .join(returned.withColumn("_returned", F.lit(True)), [S.USER_ID, S.ITEM_ID], "left")
        .join(last_bought, [S.USER_ID, S.ITEM_ID], "left")
        .join(typical_price, S.USER_ID, "left")
    )
    recent_category = (F.size("recent_categories") == 0) | F.array_contains(
        "recent_categories", F.col(S.CATEGORY_ID)
    )
    dropped: Column = (
        (F.col("exclude_returned") & F.coalesce(F.col("_returned"), F.lit(False)))
        | ((F.col("recent_days") > 0) & (F.col("_days_since") <= F.col("recent_days")) & recent_category)
        | (F.col("_item_price") > F.col("max_price_ratio") * F.col("_user_price"))
    )
    return df.filter(~F.coalesce(dropped, F.lit(False))).select(
        *scored.columns, S.CATEGORY_ID, "max_per_category"
    )


def not_recently_bought(
    featured: DataFrame, strategies: DataFrame, history: History, book: StrategyBook
) -> DataFrame:
    """Campaign items keep out of the lists of the new-items mode what the user bought before: the mode's
    promise holds for featured items too."""
    modes = [(name, is_new_items(s)) for name, s in book.strategies.items()]
    new_items = strategies.sparkSession.createDataFrame(modes, "strategy_id string, _new_items boolean")
    users = strategies.join(F.broadcast(new_items), S.STRATEGY_ID).filter("_new_items").select(S.USER_ID)
    excluded = bought_pairs(history.of_type(S.PURCHASE)).join(users, S.USER_ID, "left_semi")
    return featured.join(excluded, [S.USER_ID, S.ITEM_ID], "left_anti")


def campaign_rows(strategies: DataFrame, campaign: DataFrame, products: DataFrame) -> DataFrame:
    """(user_id, item_id, position): the campaign items each user's strategy must show, at most its slots."""
    return (
        strategies.join(F.broadcast(campaign), S.STRATEGY_ID)
        .join(F.broadcast(products.select(S.ITEM_ID)), S.ITEM_ID, "left_semi")
        .filter(F.col("position") < F.col("slots"))
        .select(S.USER_ID, S.ITEM_ID, "position")
    )


def diversify_top_k(df: DataFrame, k: int, campaign: DataFrame | None = None) -> DataFrame:
    """Campaign items first claim their slots; the rest of the k places go to the best other items with at
    most ``max_per_category`` per category (uncategorised items are not capped), then, when those are fewer
    than the places, to the best of the items beyond the cap: no list is shorter than k while eligible items
    exist. Ranked by score within each of the two groups; campaign items that were not candidates at all
    come last."""
    if campaign is not None:
        df = df.join(campaign.select(S.USER_ID, S.ITEM_ID), [S.USER_ID, S.ITEM_ID], "left_anti")
    in_category = Window.partitionBy(S.USER_ID, S.CATEGORY_ID).orderBy(F.desc("score"), F.asc(S.ITEM_ID))
    over_cap = (
        F.col(S.CATEGORY_ID).isNotNull()
        & F.col("max_per_category").isNotNull()
        & (F.row_number().over(in_category) > F.col("max_per_category"))
    )
    capped = df.withColumn("_over", over_cap)
    best_first = Window.partitionBy(S.USER_ID).orderBy(
        F.asc("_over"), F.desc_nulls_last("score"), F.asc(S.ITEM_ID)
    )
    ranked = capped.withColumn("_r", F.row_number().over(best_first))
    if campaign is not None:
        slots = campaign.groupBy(S.USER_ID).agg(F.count("*").alias("_slots"))
        ranked = (
            ranked.join(slots, S.USER_ID, "left")
            .filter(F.col("_r") <= F.lit(k) - F.coalesce(F.col("_slots"), F.lit(0)))
            .drop("_slots")
        )
    else:
        ranked = ranked.filter(F.col("_r") <= k)
    return ranked.withColumn("rank", F.row_number().over(best_first)).drop("_r", "_over")


def featured_items(
    featured: DataFrame, strategies: DataFrame, eligible: DataFrame, products: DataFrame
) -> DataFrame:
    """Rows for the campaign items each user must see; an item that also was a candidate keeps its score."""
    scores = eligible.select(S.USER_ID, S.ITEM_ID, "score", "sources", "explanation")
    no_sources = F.array().cast("array<string>")
    return (
        featured.join(strategies, S.USER_ID)
        .join(scores, [S.USER_ID, S.ITEM_ID], "left")
        .join(F.broadcast(products.select(S.ITEM_ID, S.CATEGORY_ID)), S.ITEM_ID, "left")
        .select(
            S.USER_ID,
            S.ITEM_ID,
            S.SEGMENT_ID,
            S.STRATEGY_ID,
            "score",
            F.array_sort(F.array_union(F.coalesce("sources", no_sources), F.array(F.lit("campaign")))).alias(
                "sources"
            ),
            F.concat_ws("; ", F.lit("featured in the current campaign"), F.col("explanation")).alias(
                "explanation"
            ),
            S.CATEGORY_ID,
            F.lit(None).cast("int").alias("max_per_category"),
        )
    )


@dataclass(frozen=True)
class RankingInputs:
    """What ranking reads for one as-of date. :meth:`read` fills it from the warehouse for the ranking
    stage, replay and evaluate alike; tests build it from inline frames."""

    candidates: DataFrame
    segments: DataFrame
    history: History  # the events before the date and the catalog as of it
    scores: DataFrame | None = None  # (user_id, item_id, scorer, score): joins the blends by scorer weight
    learned: DataFrame | None = None  # ranker_scores of the date: the order of ``ranker: learned`` strategies

    @classmethod
    def read(cls, store: TableStore, history: History) -> RankingInputs:
        as_of = history.as_of
        on_date = F.col(S.AS_OF) == F.lit(as_of)
        return cls(
            store.read_table(S.CANDIDATES).filter(on_date),
            store.read_table(S.USER_SEGMENTS).filter(on_date),
            history,
            store.read_table(S.SCORES).filter(on_date) if store.exists(S.SCORES) else None,
            learned_scores(store, as_of),
        )


def rank(
    spark: SparkSession,
    inputs: RankingInputs,
    book: StrategyBook,
    ctx: Context,
    k: int,
    run_id: str,
    model_version: str,
    choose: Chooser | None = None,
) -> DataFrame:
    """``recommendations`` rows for one as-of date; ``choose`` picks each segment's strategy (default: the
    book's selection rules in ``ctx``)."""
    # by user, once: the joins, aggregations and windows below are per user (see the Spark setting
    # requireAllClusterKeysForCoPartition in conf/default.yaml)
    candidates = inputs.candidates.repartition(S.USER_ID)
    segments, history = inputs.segments, inputs.history
    if history.as_of != ctx.as_of:  # the rules read one date's past, the lists are stamped with the other
        raise ValueError(f"ranking inputs as of {history.as_of} for lists as of {ctx.as_of}")
    scores, learned = inputs.scores, inputs.learned
    decisions = segment_strategies(segments, choose or rule_chooser(book, ctx))
    strategies = user_strategies(spark, segments, decisions)
    tables = strategy_tables(spark, book)
    scored = blend(candidates, strategies, tables.source_weights)
    if scores is not None:  # the hand-set blends weigh the LM scores; the learned ranker has them as features
        blends = tables.rankers.filter(F.col("ranker") == "blend").select(S.STRATEGY_ID)
        weights = tables.scorer_weights.join(F.broadcast(blends), S.STRATEGY_ID, "left_semi")
        scored = add_scorer_scores(scored, scores, strategies, weights)
    check_learned(book, set(decisions.values()), learned, ctx.as_of)
    if learned is not None:
        scored = apply_ranker(scored, learned, strategies, tables.rankers)
    products = history.products
    eligible = apply_rules(scored, history, tables.rules)
    campaign = campaign_table(spark, book, set(decisions.values()))
    if campaign is None:  # no chosen strategy features items: the eligible candidates are read once
        top = diversify_top_k(eligible, k)
    else:
        featured = not_recently_bought(
            campaign_rows(strategies, campaign, products), strategies, history, book
        )
        featured_rows = featured_items(featured, strategies, eligible, products)
        others = diversify_top_k(eligible, k, featured)
        best_first = Window.partitionBy(S.USER_ID).orderBy(F.desc_nulls_last("score"), F.asc(S.ITEM_ID))
        top = (
            others.drop("rank").unionByName(featured_rows).withColumn("rank", F.row_number().over(best_first))
        )
    return top.select(
        F.lit(run_id).alias(S.RUN_ID),
        F.lit(ctx.as_of).cast("date").alias(S.AS_OF),
        S.USER_ID,
        F.col("rank").cast("int").alias("rank"),
        S.ITEM_ID,
        "score",
        S.SEGMENT_ID,
        S.STRATEGY_ID,
        "sources",
        "explanation",
        F.lit(model_version).alias("model_version"),
    )


def learned_scores(store: TableStore, as_of: dt.date) -> DataFrame | None:
    """The learned ranker's scores of the date's candidates, None when it wrote none for the date."""
    if not store.exists(S.RANKER_SCORES):
        return None
    scores = store.read_table(S.RANKER_SCORES).filter(F.col(S.AS_OF) == F.lit(as_of))
    return scores if scores.limit(1).count() else None


def run_ranking(
    spark: SparkSession,
    store: TableStore,
    history: History,
    book: StrategyBook,
    ctx: Context,
    k: int,
    run_id: str,
    choose: Chooser | None = None,
) -> RankingReport:
    as_of = F.lit(ctx.as_of)
    inputs = RankingInputs.read(store, history)
    segments = inputs.segments
    model_run = segments.select("model_run_id").first()
    model_version = f"genre-spark {__version__}; segments {model_run[0] if model_run else '-'}"
    recs = rank(spark, inputs, book, ctx, k, run_id, model_version, choose)
    write = store.replace_date(
        recs, S.RECOMMENDATIONS, as_of=ctx.as_of, run_id=run_id, stage="ranking", rebalance=True
    )
    served = store.read_table(S.RECOMMENDATIONS).filter(F.col(S.AS_OF) == as_of)
    per_user = served.groupBy(S.USER_ID, S.STRATEGY_ID).agg(F.count("*").alias("n"))
    summary = (
        per_user.groupBy(S.STRATEGY_ID)
        .agg(F.count("*").alias("users"), F.sum(F.when(F.col("n") < k, 1).otherwise(0)).alias("short"))
        .collect()
    )  # one row per strategy
    eligible = segments.count()
    served_users = sum(r["users"] for r in summary)
    return RankingReport(
        ctx.as_of,
        eligible,
        # users with fewer than k eligible items, including those left with none
        eligible - served_users + sum(r["short"] for r in summary),
        served.select(S.ITEM_ID).distinct().count(),
        {r[S.STRATEGY_ID]: r["users"] / max(served_users, 1) for r in summary},
        k,
        write,
    )
