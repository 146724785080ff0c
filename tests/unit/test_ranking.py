"""Ranking on inline data: strategy per segment, blend, each business rule, the diversity cap, top-K."""

from __future__ import annotations

import datetime as dt

from chispa import assert_approx_df_equality
from pyspark.sql import DataFrame, SparkSession

from genre_spark.ranking import (
    RankingInputs,
    add_scorer_scores,
    apply_rules,
    blend,
    campaign_table,
    diversify_top_k,
    rank,
    rule_chooser,
    segment_strategies,
    strategy_tables,
    user_strategies,
)
from genre_spark.strategy import Context, StrategyBook
from tests.conftest import history_of

AS_OF = dt.date(2011, 12, 9)
CANDS = "user_id string, item_id string, source string, source_score double, source_rank int, detail string"
EVENTS = "user_id string, item_id string, event_type string, unit_price double, event_ts timestamp"


def book(**rules: object) -> StrategyBook:
    base_rules = {
        "exclude_returned": False,
        "exclude_recently_bought_days": 0,
        "exclude_recently_bought_categories": [],
        "max_price_ratio": None,
        "campaign_items": [],
        "campaign_slots": 0,
    }
    return StrategyBook.model_validate(
        {
            "strategies": {
                "s": {
                    "description": "test",
                    "source_weights": {"buy_again": 1.0, "als": 0.5, "content": 0.0},
                    "scorer_weights": {"bi_encoder": 1.0, "cross_encoder": 0.0},
                    "max_per_category": 2,
                    "rules": {**base_rules, **rules},
                },
                "other": {
                    "description": "test",
                    "source_weights": {"als": 1.0},
                    "scorer_weights": {},
                    "max_per_category": None,
                    "rules": base_rules,
                },
            },
            "selection": [{"strategy": "other", "segment": "new"}],
            "default": "s",
        }
    )


def strategies_of(spark: SparkSession, b: StrategyBook) -> DataFrame:
    segments = spark.createDataFrame(
        [("u1", 0, "loyal"), ("u2", 1, "new")], "user_id string, segment_id int, segment_label string"
    )
    return user_strategies(
        spark, segments, segment_strategies(segments, rule_chooser(b, Context(AS_OF, None)))
    )


def test_strategy_per_segment(spark: SparkSession) -> None:
    got = {r.user_id: r.strategy_id for r in strategies_of(spark, book()).collect()}
    assert got == {"u1": "s", "u2": "other"}


def test_blend_normalises_per_source_and_weights(spark: SparkSession) -> None:
    b = book()
    weights = strategy_tables(spark, b).source_weights
    candidates = spark.createDataFrame(
        [
            ("u1", "A", "buy_again", 4.0, 1, "bought 4 times"),
            ("u1", "B", "buy_again", 2.0, 2, "bought twice"),
            ("u1", "B", "als", 10.0, 1, "similar baskets"),
            ("u1", "C", "als", 5.0, 2, "similar baskets"),
            ("u1", "D", "content", 9.0, 1, "similar to X"),  # weight 0: dropped
        ],
        CANDS,
    )
    result = blend(candidates, strategies_of(spark, b), weights).select(
        "user_id", "item_id", "score", "sources", "explanation"
    )
    expected = spark.createDataFrame(
        [
            ("u1", "A", 1.0, ["buy_again"], "bought 4 times"),
            ("u1", "B", 0.5 * 1.0 + 0.5 * 1.0, ["als", "buy_again"], "bought twice"),  # tie: first max wins
            ("u1", "C", 0.5 * 0.5, ["als"], "similar baskets"),
        ],
        "user_id string, item_id string, score double, sources array<string>, explanation string",
    )
    assert_approx_df_equality(
        result.drop("explanation"),
        expected.drop("explanation"),
        1e-9,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    explanations = {r.item_id: r.explanation for r in result.collect()}
    assert explanations["A"] == "bought 4 times" and explanations["C"] == "similar baskets"


def test_scorer_scores_join_the_blend_and_explain_a_move_up(spark: SparkSession) -> None:
    b = book()
    tables = strategy_tables(spark, b)
    strategies = strategies_of(spark, b)
    candidates = spark.createDataFrame(
        [
            ("u1", "A", "buy_again", 4.0, 1, "bought 4 times"),
            ("u1", "B", "buy_again", 3.0, 2, "bought 3 times"),
            ("u1", "C", "buy_again", 1.0, 3, "bought once"),
        ],
        CANDS,
    )
    scores = spark.createDataFrame(
        [
            ("u1", "A", "bi_encoder", 0.1),
            ("u1", "B", "bi_encoder", 0.3),
            ("u1", "C", "bi_encoder", 0.9),  # lifted from 3rd: 0.25 + 1.0
            ("u1", "C", "cross_encoder", 0.9),  # weight 0 in strategy s: no effect
        ],
        "user_id string, item_id string, scorer string, score double",
    )
    blended = blend(candidates, strategies, tables.source_weights)
    result = add_scorer_scores(blended, scores, strategies, tables.scorer_weights).select(
        "item_id", "score", "explanation"
    )
    expected = spark.createDataFrame(
        [
            ("A", 1.0, "bought 4 times"),  # min-max normalised bi_encoder score 0
            ("B", 0.75 + 0.25, "bought 3 times"),  # 0.25: still 2nd once ties break by item id
            ("C", 0.25 + 1.0, "bought once; moved up by bi_encoder (score 0.90)"),
        ],
        "item_id string, score double, explanation string",
    )
    assert_approx_df_equality(result, expected, 1e-9, ignore_row_order=True)


def _scored(spark: SparkSession, items: list[str]) -> DataFrame:
    return spark.createDataFrame(
        [("u1", item, 0, "s", 1.0 - i / 10, ["als"], "x") for i, item in enumerate(items)],
        "user_id string, item_id string, segment_id int, strategy_id string, score double, "
        "sources array<string>, explanation string",
    )


def _rule_run(spark: SparkSession, b: StrategyBook, events: list[tuple]) -> list[str]:  # type: ignore[type-arg]
    items = spark.createDataFrame(
        [("A", 0, 2.0, True), ("B", 0, 2.0, True), ("C", 1, 2.0, True), ("D", 1, 50.0, True)],
        "item_id string, category_id int, unit_price double, is_product boolean",
    )
    rules = strategy_tables(spark, b).rules
    history = history_of(spark.createDataFrame(events, EVENTS), items, AS_OF)
    kept = apply_rules(_scored(spark, ["A", "B", "C", "D"]), history, rules)
    return sorted(r.item_id for r in kept.collect())


def day(n: int) -> dt.datetime:
    return dt.datetime(2011, 12, 9) - dt.timedelta(days=n)


def test_rule_exclude_returned(spark: SparkSession) -> None:
    events = [("u1", "A", "purchase", 2.0, day(20)), ("u1", "A", "return", 2.0, day(19))]
    assert _rule_run(spark, book(exclude_returned=True), events) == ["B", "C", "D"]
    assert _rule_run(spark, book(exclude_returned=False), events) == ["A", "B", "C", "D"]
    late = [("u1", "A", "return", 2.0, day(-1))]  # after as-of: unknown yet
    assert _rule_run(spark, book(exclude_returned=True), late) == ["A", "B", "C", "D"]


def test_rule_exclude_recently_bought_in_categories(spark: SparkSession) -> None:
    events = [
        ("u1", "A", "purchase", 2.0, day(5)),
        ("u1", "C", "purchase", 2.0, day(5)),
        ("u1", "B", "purchase", 2.0, day(40)),
    ]
    assert _rule_run(spark, book(exclude_recently_bought_days=30), events) == ["B", "D"]
    only_cat_1 = book(exclude_recently_bought_days=30, exclude_recently_bought_categories=[1])
    assert _rule_run(spark, only_cat_1, events) == ["A", "B", "D"]


def test_rule_price_cap_relative_to_the_user(spark: SparkSession) -> None:
    events = [("u1", "A", "purchase", 2.0, day(5)), ("u1", "B", "purchase", 4.0, day(5))]
    assert _rule_run(spark, book(max_price_ratio=3.0), events) == ["A", "B", "C"]  # D costs 50 > 3 x 2
    assert _rule_run(spark, book(max_price_ratio=30.0), events) == ["A", "B", "C", "D"]


def test_diversity_cap_then_top_k(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("u1", f"i{i}", 1.0 - i / 10, cat, 2) for i, cat in enumerate([0, 0, 0, 1, None, 1, 1])],
        "user_id string, item_id string, score double, category_id int, max_per_category int",
    )
    top = diversify_top_k(df, k=4).orderBy("rank").collect()
    assert [(r.item_id, r.rank) for r in top] == [("i0", 1), ("i1", 2), ("i3", 3), ("i4", 4)]
    # too few items within the caps for k = 7: the best beyond them fill the list, after the rest
    full = diversify_top_k(df, k=7).orderBy("rank").collect()
    assert [r.item_id for r in full] == ["i0", "i1", "i3", "i4", "i5", "i2", "i6"]


def test_campaign_items_take_at_most_their_slots(spark: SparkSession) -> None:
    b = book(campaign_items=["Z", "B", "Y"], campaign_slots=2)  # Y is beyond the slots
    candidates = spark.createDataFrame(
        [("u1", i, "als", 10.0 - n, n + 1, "similar baskets") for n, i in enumerate("ABCDE")], CANDS
    )
    segments = spark.createDataFrame(
        [("u1", 0, "loyal")], "user_id string, segment_id int, segment_label string"
    )
    items = spark.createDataFrame(
        [(i, c, 1.0, True) for i, c in zip("ABCDEYZ", [0, 1, 2, 3, 4, 5, 6], strict=True)],
        "item_id string, category_id int, unit_price double, is_product boolean",
    )
    events = spark.createDataFrame([], EVENTS + ", quantity int, order_id string")
    inputs = RankingInputs(candidates, segments, history_of(events, items, AS_OF))
    recs = rank(spark, inputs, b, Context(AS_OF, None), 4, "run", "v").orderBy("rank")
    rows = [(r.item_id, r.rank, r.sources, r.explanation) for r in recs.collect()]
    assert [r[0] for r in rows] == ["A", "B", "C", "Z"]  # 2 slots for Z and B, 2 places for the best others
    assert rows[1][2] == ["als", "campaign"] and rows[1][3].startswith("featured in the current campaign")
    assert rows[3][2] == ["campaign"] and rows[3][3] == "featured in the current campaign"  # no score: last


def test_campaign_steps_only_for_chosen_strategies_that_feature_items(spark: SparkSession) -> None:
    b = book(campaign_items=["Z", "Y"], campaign_slots=1)  # strategy 's' features Z and Y; 'other' nothing
    assert campaign_table(spark, b, {"other"}) is None
    table = campaign_table(spark, b, {"s", "other"})
    assert table is not None
    assert sorted(tuple(r) for r in table.collect()) == [("s", "Y", 1, 1), ("s", "Z", 0, 1)]
