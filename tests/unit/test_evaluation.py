"""Evaluation on a tiny warehouse: the split has no leakage, baselines go through ranking, metrics land."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import Settings
from genre_spark.evaluation import FULL, evaluate, evaluation_inputs, learned_book, new_items_book
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, load_strategies

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


def test_split_has_no_leakage(warehouse: TableStore) -> None:
    inputs = evaluation_inputs(warehouse, AS_OF, horizon_days=30)
    latest = inputs.history_events.agg(F.max(S.EVENT_TS)).first()
    assert latest is not None and latest[0] < dt.datetime(2011, 9, 1)
    future = {(r[S.USER_ID], r[S.ITEM_ID]) for r in inputs.future.collect()}
    assert future == {("u1", "A"), ("u1", "C"), ("u2", "B")}  # u2's D is past the horizon, u9 has no segment


def test_variants_change_rules_only() -> None:
    book = load_strategies()
    new = new_items_book(book)
    assert all(s.rules.exclude_recently_bought_days >= 36_500 for s in new.strategies.values())
    assert all(s.rules.exclude_recently_bought_categories == [] for s in new.strategies.values())
    assert new.selection == book.selection
    assert {s.ranker for s in learned_book(book).strategies.values()} == {"discriminator"}


def test_evaluate_writes_metrics_for_every_model_and_variant(
    spark: SparkSession, settings: Settings, warehouse: TableStore
) -> None:
    baselines = ["baseline_buy_again", "baseline_co_occurrence"]
    tuned = settings.evaluation.model_copy(update={"baselines": baselines, "ks": [10]})
    report = evaluate(spark, warehouse, load_strategies(), Context(AS_OF, None), tuned, "eval-1", 30)
    metrics = warehouse.read_table(S.METRICS)
    models = {r.model for r in metrics.select("model").distinct().collect()}
    assert models == {FULL, *baselines}
    assert {r.variant for r in metrics.select("variant").distinct().collect()} == {"all", "new"}
    # buy-again lists u1: A, B against {A, C}: hit at 1 of 2 relevant; u2: C against {B}: miss
    ideal = 1 + 1 / math.log2(3)
    assert report.value("all", "baseline_buy_again", "ndcg", 10) == pytest.approx((1 / ideal + 0) / 2)
    assert report.value("new", "baseline_buy_again", "ndcg", 10) == pytest.approx(0.0)  # nothing new in it
    # co-occurrence proposes u1's C, bought in the window and new to u1
    assert report.value("new", "baseline_co_occurrence", "hit_rate", 10) == pytest.approx(0.5)
    assert report.users_evaluated == {"all": 2, "new": 2}
    assert "baseline_buy_again" in report.format()
    again = evaluate(spark, warehouse, load_strategies(), Context(AS_OF, None), tuned, "eval-1", 30)
    assert again.write.skipped and warehouse.read_table(S.METRICS).count() == metrics.count()
    assert again.headline == report.headline
