"""Ingest of both real Online Retail exports, checked against the figures in the data README."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from genre_spark import schemas as S
from tests.conftest import REAL_RUN, RealWarehouse, retail_file

pytestmark = pytest.mark.slow

OLD, NEW = "online_retail_ii_2009_2010", "online_retail_2010_2011"


def test_known_figures(real: RealWarehouse) -> None:
    report = real.ingest
    by_source = {s.source: s for s in report.sources}
    new, old = by_source[NEW], by_source[OLD]
    # one product is one id: StockCodes are trimmed and upper-cased (4,070 raw codes -> 3,958 in 2010-2011;
    # 4,632 -> 4,480 in 2009-2010, where 82001S / 82001s and the like were two)
    assert (new.rows_in, new.distinct_orders, new.distinct_items) == (541_909, 25_900, 3_958)
    assert (old.rows_in, old.distinct_orders, old.distinct_items) == (525_461, 28_816, 4_480)
    assert new.reasons["missing_user_id"] == 135_080
    assert old.reasons["missing_user_id"] == 107_927
    for s in (new, old):
        assert s.rows_in == s.valid + s.quarantined


def test_overlap_duplicates_match_an_independent_count(real: RealWarehouse) -> None:
    """pandas: rows valid in both exports, matched as multisets on their content."""
    keys = []
    for name in (OLD, NEW):
        df = pd.read_csv(retail_file(f"{name}.csv.gz"), dtype=str, keep_default_na=False)
        df.columns = ["order", "item", "title", "qty", "ts", "price", "user", "country"]
        qty, price = df.qty.astype(int), df.price.astype(float)
        cancel = df.order.str.startswith("C")
        ok = (df.user != "") & (price > 0) & (qty != 0) & ~((qty < 0) & ~cancel) & ~(cancel & (qty > 0))
        df = df[ok]
        keys.append(
            df.assign(price=price[ok].astype(str), item=df.item.str.strip())
            .groupby(["order", "item", "qty", "ts", "price", "user"])
            .size()
        )
    both = pd.concat(keys, axis=1, join="inner").min(axis=1).sum()
    report = real.ingest
    by_source = {s.source: s for s in report.sources}
    assert both > 10_000
    assert by_source[NEW].reasons["duplicate_event"] == both
    assert by_source[OLD].reasons.get("duplicate_event", 0) == 0  # the first source listed wins


def test_quantities_are_conserved(real: RealWarehouse) -> None:
    """sum(Quantity) of the 2010-2011 export = signed event quantities + quarantined raw quantities."""
    store = real.store
    events = store.read_table(S.EVENTS).filter(F.col(S.SOURCE) == NEW)
    signed = events.select(
        F.sum(F.when(F.col(S.EVENT_TYPE) == S.RETURN, -F.col(S.QUANTITY)).otherwise(F.col(S.QUANTITY)))
    ).first()[0]
    quarantined = (
        store.read_table(S.QUARANTINE)
        .filter(F.col(S.SOURCE) == NEW)
        .select(F.sum(F.get_json_object("raw", "$.Quantity").cast("long")))
        .first()[0]
    )
    assert signed + quarantined == 5_176_450


def test_tables_are_delta_with_the_contract_schema(real: RealWarehouse) -> None:
    store, report = real.store, real.ingest
    for table in (S.EVENTS, S.QUARANTINE, S.ITEMS, S.USERS):
        dt = DeltaTable(store.table_path(table))
        assert [f.name for f in dt.schema().fields] == S.CONTRACTS[table].names
        history = dt.history()
        assert history[-1]["genre_spark.run_id"] == REAL_RUN  # version 0 is the ingest
        if table in (S.EVENTS, S.QUARANTINE):  # (items is rewritten by enrich in later tests)
            assert len(history) == 1
    events = pa.table(DeltaTable(store.table_path(S.EVENTS)).to_pyarrow_table(columns=[S.EVENT_ID]))
    valid = sum(s.valid for s in report.sources)
    assert events.num_rows == valid
    assert len(set(events.column(S.EVENT_ID).to_pylist())) == valid


def test_items_and_users(real: RealWarehouse) -> None:
    store = real.store
    items = store.read_table(S.ITEMS)
    not_products = {r.item_id for r in items.filter(~F.col(S.IS_PRODUCT)).collect()}
    assert {"POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE", "GIFT_0001_10"} <= not_products
    assert items.filter(F.col(S.IS_PRODUCT)).count() > 4_500
    heart = items.filter(F.col(S.ITEM_ID) == "85123A").first()
    assert heart is not None and heart.title == "WHITE HANGING HEART T-LIGHT HOLDER" and heart.unit_price > 0
    users = store.read_table(S.USERS)
    assert users.count() == store.read_table(S.EVENTS).select(S.USER_ID).distinct().count()


def test_demo_data_ships_with_the_project() -> None:
    shipped = Path(__file__).resolve().parents[2] / "data" / "online_retail"
    for name in (OLD, NEW):
        assert (shipped / f"{name}.csv.gz").stat().st_size > 7_000_000
    assert "CC BY 4.0" in (shipped / "README.md").read_text()
