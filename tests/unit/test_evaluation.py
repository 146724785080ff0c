"""Evaluation on a tiny warehouse: the split has no leakage, baselines go through ranking, metrics land."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import DiscriminatorSettings, Settings
from genre_spark.evaluation import (
    BLEND,
    DECAYED,
    LEARNED,
    PRODUCT,
    REFIT,
    ablation_cutoffs,
    ablations,
    decayed_buy_again,
    evaluate,
    pick_half_life,
    protocol_truth,
    report_order,
)
from genre_spark.history import History
from genre_spark.learned.features import feature_columns
from genre_spark.learned.stage import MODEL_KIND, ModelNote, write_features
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, load_strategies, new_items_book, with_ranker

AS_OF = dt.date(2011, 9, 1)


def contract_frame(spark: SparkSession, table: str, rows: list[dict[str, Any]]) -> DataFrame:
    """Rows of ``table``'s contract; columns not given are null."""
    schema = S.CONTRACTS[table]
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def purchase(user: str, item: str, day: str, order: str) -> dict[str, Any]:
    return {
        S.EVENT_ID: f"{user}-{item}-{day}",
        S.USER_ID: user,
        S.ITEM_ID: item,
        S.EVENT_TYPE: S.PURCHASE,
        S.QUANTITY: 1,
        S.UNIT_PRICE: 1.0,
        S.EVENT_TS: dt.datetime.fromisoformat(f"{day} 10:00:00"),
        S.ORDER_ID: order,
    }


@pytest.fixture()
def warehouse(spark: SparkSession, store: TableStore) -> TableStore:
    events = [
        purchase("u1", "A", "2011-08-01", "o1"),
        purchase("u1", "B", "2011-08-01", "o1"),
        purchase("u2", "C", "2011-08-10", "o2"),
        purchase("u1", "A", "2011-09-05", "o3"),  # repeat purchase in the window
        purchase("u1", "C", "2011-09-06", "o3"),  # new item in the window
        purchase("u2", "B", "2011-09-02", "o4"),
        purchase("u2", "D", "2011-10-20", "o5"),  # after the 30-day horizon
        purchase("u9", "A", "2011-09-03", "o6"),  # no segment (no purchase before as_of)
    ]
    items = [{S.ITEM_ID: i, S.TITLE: i, S.IS_PRODUCT: True, S.CATEGORY_ID: 0} for i in "ABCD"]
    segments = [
        {S.USER_ID: u, S.AS_OF: AS_OF, S.SEGMENT_ID: 0, S.SEGMENT_LABEL: "regulars", "model_run_id": "m"}
        for u in ("u1", "u2")
    ]
    cands = [
        ("u1", "A", "buy_again", 2.0),
        ("u1", "B", "buy_again", 1.0),
        ("u1", "C", "co_occurrence", 1.0),
        ("u2", "C", "buy_again", 1.0),
        ("u2", "B", "popularity", 2.0),
        ("u1", "A", "popularity", 2.0),
        ("u1", "C", "als", 1.0),
        ("u2", "D", "als", 1.0),
    ]
    candidates = [
        {
            S.USER_ID: u,
            S.ITEM_ID: i,
            "source": s,
            "source_score": v,
            "source_rank": 1,
            "detail": s,
            S.AS_OF: AS_OF,
        }
        for u, i, s, v in cands
    ]
    for table, rows in [
        (S.EVENTS, events),
        (S.ITEMS, items),
        (S.USER_SEGMENTS, segments),
        (S.CANDIDATES, candidates),
    ]:
        store.write_table(contract_frame(spark, table, rows), table, mode="overwrite", run_id="setup")
    return store


def with_ranker_tables(store: TableStore, settings: DiscriminatorSettings) -> TableStore:
    """The discriminator stage's tables as of AS_OF, its score standing in for a model: buy-again first."""
    decisions = {0: "balanced"}
    history = History.read(store, AS_OF)
    ranker = settings.model_copy(update={"label_days": 28})
    write_features(store, history, decisions, load_strategies(), "setup", ranker, labelled=False)
    scores = store.read_table(S.RANKER_FEATURES).select(
        S.USER_ID,
        S.ITEM_ID,
        (F.col("buy_again_score") * 10 + F.col("co_occurrence_score")).alias(S.LEARNED_SCORE),
        F.lit(None).cast("double").alias(S.LEARNED_NEW_SCORE),
        F.lit("m1").alias("model_run_id"),
        S.AS_OF,
    )
    store.replace_date(scores, S.RANKER_SCORES, as_of=AS_OF, run_id="setup", stage="discriminator")
    note = ModelNote("m1", AS_OF, [AS_OF], feature_columns(), 1, 1, 1, [("buy_again_score", 1.0)], "f")
    store.write_model_note(MODEL_KIND, "m1", note.to_json())
    return store


def test_truth_follows_the_protocol(spark: SparkSession, warehouse: TableStore) -> None:
    events, items = warehouse.read_table(S.EVENTS), warehouse.read_table(S.ITEMS)
    truth = protocol_truth(events, items, AS_OF, AS_OF + dt.timedelta(days=30))
    got = {(r.variant, r.user_id): r["items"] for r in truth.lists.collect()}
    # u2's D is past the horizon; u9 bought nothing before as_of; u1's A was bought before (not new)
    assert got == {
        ("all", "u1"): ["A", "C"],
        ("all", "u2"): ["B"],
        ("new", "u1"): ["C"],
        ("new", "u2"): ["B"],
    }
    assert {(r.user_id, r.item_id) for r in truth.history.collect()} == {
        ("u1", "A"),
        ("u1", "B"),
        ("u2", "C"),
    }


def test_decayed_buy_again_and_its_half_life(spark: SparkSession, warehouse: TableStore) -> None:
    events, items = warehouse.read_table(S.EVENTS), warehouse.read_table(S.ITEMS)
    purchases = History.of(events, items, AS_OF).purchases()
    got = {(r.user_id, r.item_id): r.score for r in decayed_buy_again(purchases, AS_OF, 31.0).collect()}
    assert got == {
        ("u1", "A"): pytest.approx(0.5),
        ("u1", "B"): pytest.approx(0.5),
        ("u2", "C"): pytest.approx(0.5 ** (22 / 31)),
    }
    # nobody bought in the window before as_of: the middle choice
    assert pick_half_life(events, items, AS_OF, 30, [7, 30, 90], 10)[0] == 30


def test_strategy_book_variants_change_rules_or_ranker_only() -> None:
    book = load_strategies()
    new = new_items_book(book)
    assert all(s.rules.exclude_recently_bought_days >= 36_500 for s in new.strategies.values())
    assert all(s.rules.exclude_recently_bought_categories == [] for s in new.strategies.values())
    assert new.selection == book.selection
    assert {s.ranker for s in with_ranker(book, "blend").strategies.values()} == {"blend"}


def test_evaluate_writes_metrics_for_every_model_and_variant(
    spark: SparkSession, settings: Settings, warehouse: TableStore
) -> None:
    store = with_ranker_tables(warehouse, settings.discriminator)
    # segment_popularity is not among the candidates: evaluate makes it from the events
    baselines = ["buy_again", "co_occurrence", "segment_popularity"]
    evaluation = settings.evaluation.model_copy(
        update={"baselines": baselines, "ks": [10], "ablations": False}
    )
    tuned = settings.model_copy(update={"evaluation": evaluation})
    ctx = Context(AS_OF, None)
    report = evaluate(spark, store, tuned, load_strategies(), ctx, "eval-1", 30)
    metrics = store.read_table(S.METRICS)
    models = {r.model for r in metrics.filter(F.col("k").isNotNull()).select("model").distinct().collect()}
    assert models == {PRODUCT, LEARNED, BLEND, DECAYED, *baselines}
    assert report.models == [PRODUCT, LEARNED, BLEND, *baselines, DECAYED]
    assert {r.variant for r in metrics.select("variant").distinct().collect()} == {"all", "new"}
    # buy-again lists u1: A, B against {A, C}: hit at 1 of 2 relevant; u2: C against {B}: miss
    ideal = 1 + 1 / math.log2(3)
    assert report.value("all", "buy_again", "ndcg", 10) == pytest.approx((1 / ideal + 0) / 2)
    assert report.value("new", "buy_again", "ndcg", 10) == pytest.approx(0.0)  # nothing new in it
    # co-occurrence proposes u1's C, bought in the window and new to u1
    assert report.value("new", "co_occurrence", "hit_rate", 10) == pytest.approx(0.5)
    # the segment's list is C, A, B (most recent first): in *new*, u1 keeps C (a hit at 1), u2 keeps A, B
    assert report.value("all", "segment_popularity", "hit_rate", 10) == pytest.approx(1.0)
    assert report.value("new", "segment_popularity", "ndcg", 10) == pytest.approx((1 + 1 / math.log2(3)) / 2)
    # the learned score puts buy-again first: the same hits as buy-again, then C for u1
    assert report.value("all", LEARNED, "ndcg", 10) > report.value("all", "buy_again", "ndcg", 10)
    assert report.value("all", PRODUCT, "ndcg", 10) == pytest.approx(report.value("all", LEARNED, "ndcg", 10))
    assert report.users_evaluated == {"all": 2, "new": 2}
    # the truth's pairs: u1 A (buy-again) and C (co-occurrence, ALS), u2 B (popularity)
    assert report.recall_ceiling[("all", "all sources")] == pytest.approx(1.0)
    assert report.recall_ceiling[("all", "buy_again")] == pytest.approx(1 / 3)
    assert "buy_again" in report.format() and "recall ceiling" in report.format()
    again = evaluate(spark, store, tuned, load_strategies(), ctx, "eval-1", 30)
    assert again.write.skipped and store.read_table(S.METRICS).count() == metrics.count()
    assert again.headline == report.headline and again.recall_ceiling == report.recall_ceiling
    # another horizon is another evaluation (the window's purchases differ), not a rerun
    longer = evaluate(spark, store, tuned, load_strategies(), ctx, "eval-1", 60)
    assert not longer.write.skipped and longer.horizon_days == 60
    assert {r.run_id for r in store.read_table(S.METRICS).select(S.RUN_ID).distinct().collect()} == {
        "eval-1-h30",
        "eval-1-h60",
    }


def test_ablations_refit_on_the_newest_cutoffs_beside_a_reference(settings: Settings) -> None:
    cutoffs = [dt.date(2011, 5, 12), dt.date(2011, 6, 9), dt.date(2011, 4, 14)]
    note = ModelNote("r", AS_OF, cutoffs, [], 0, 0, 0, [], "f")
    one = settings.evaluation.model_copy(update={"ablation_cutoffs": 1})
    assert ablation_cutoffs(note, one) == [dt.date(2011, 6, 9)]
    every = settings.evaluation.model_copy(update={"ablation_cutoffs": None})
    assert ablation_cutoffs(note, every) == sorted(cutoffs, reverse=True)
    ranker = settings.discriminator.model_copy(update={"without": ["segment"]})
    names = [a.name for a in ablations(ranker, ["buy_again", "als", "lm"], refit=True)]
    assert names == [
        REFIT,
        f"{LEARNED} -lm",
        f"{LEARNED} -season",
        f"{LEARNED} -buy_again",
        f"{LEARNED} -als",
    ]
    everything = ablations(
        settings.discriminator.model_copy(update={"without": []}), [*S.CANDIDATE_SOURCES, "lm"], True
    )
    assert {a.name for a in everything} <= set(report_order(settings.evaluation))  # each refit is shown
    found = ablations(ranker, ["als"], refit=False)  # no scores: no -lm; the model's own cut-offs: no refit
    assert [(a.name, a.without_groups, a.without_source) for a in found] == [
        (f"{LEARNED} -season", frozenset({"segment", "season"}), None),
        (f"{LEARNED} -als", frozenset({"segment"}), "als"),
    ]
