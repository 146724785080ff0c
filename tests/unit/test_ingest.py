"""The ingest stage on tiny files: accounting, dedup, reruns, bad files, catalog and user sources."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import IngestSettings, Settings, SourceSettings
from genre_spark.errors import AccountingError, InputError
from genre_spark.ingest import run_ingest, stage
from genre_spark.storage import TableStore

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
COLUMNS = {
    "order_id": "InvoiceNo",
    "item_id": "StockCode",
    "title": "Description",
    "quantity": "Quantity",
    "event_ts": "InvoiceDate",
    "unit_price": "UnitPrice",
    "user_id": "CustomerID",
    "country": "Country",
}
LINES_A = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",
    # the same line twice in one export: two real events
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527,United Kingdom",
    "536381,POST,POSTAGE,1,2010-12-01 09:41:00,18,,France",
]
LINES_B = [
    # overlaps A on its first two lines (one of the two identical ones)
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",
    "536366,22633,HAND WARMER UNION JACK,6,2010-12-02 08:28:00,1.85,17850,United Kingdom",
]


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([header, *lines]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def source(
    path: Path, table: str = "events", fmt: str = "csv", columns: dict[str, str] | None = None
) -> SourceSettings:
    return SourceSettings.model_validate(
        {"table": table, "format": fmt, "path": str(path), "columns": columns or COLUMNS}
    )


def ingest_settings(settings: Settings, **sources: SourceSettings) -> IngestSettings:
    return settings.ingest.model_copy(update={"sources": sources})


def counts(report: Any) -> dict[str, tuple[int, int, int]]:
    return {s.source: (s.rows_in, s.valid, s.quarantined) for s in report.sources}


def test_every_row_lands_once_and_overlap_is_deduplicated(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    cfg = ingest_settings(
        settings,
        a=source(write_csv(tmp_path / "a.csv.gz", LINES_A)),
        b=source(write_csv(tmp_path / "b.csv", LINES_B)),
    )
    report = run_ingest(spark, store, cfg, "run-1")
    assert counts(report) == {"a": (5, 4, 1), "b": (3, 1, 2)}
    reasons = {s.source: s.reasons for s in report.sources}
    assert reasons == {"a": {"missing_user_id": 1}, "b": {"duplicate_event": 2}}

    events = store.read_table(S.EVENTS)
    assert events.count() == 5
    assert events.select(S.EVENT_ID).distinct().count() == 5
    lantern = events.filter(F.col(S.ITEM_ID) == "71053").collect()
    assert len(lantern) == 2, "identical lines of one export are two events"
    ret = events.filter(F.col(S.EVENT_TYPE) == S.RETURN).collect()
    assert [(r.order_id, r.quantity) for r in ret] == [("C536379", 1)]

    quarantine = store.read_table(S.QUARANTINE).filter(F.col("reason") == "duplicate_event").collect()
    assert all("also in source 'a'" in q.detail for q in quarantine)

    items = {r.item_id: r for r in store.read_table(S.ITEMS).collect()}
    assert set(items) == {"85123A", "71053", "D", "POST", "22633"}
    assert items["POST"].is_product is False and items["D"].is_product is False
    assert (
        items["85123A"].is_product is True and items["85123A"].title == "WHITE HANGING HEART T-LIGHT HOLDER"
    )
    users = {r.user_id: r for r in store.read_table(S.USERS).collect()}
    assert set(users) == {"17850", "14527"}
    assert str(users["17850"].last_event_ts) == "2010-12-02 08:28:00"


def test_rerun_is_a_no_op_and_a_new_run_sees_duplicates(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    cfg = ingest_settings(settings, a=source(write_csv(tmp_path / "a.csv", LINES_A)))
    run_ingest(spark, store, cfg, "run-1")
    versions = {t: store.version(t) for t in (S.EVENTS, S.QUARANTINE, S.ITEMS, S.USERS)}

    again = run_ingest(spark, store, cfg, "run-1")
    assert all(w.skipped for w in again.writes)
    assert {t: store.version(t) for t in versions} == versions
    assert counts(again) == {"a": (5, 4, 1)}

    later = run_ingest(spark, store, cfg, "run-2")
    assert counts(later) == {"a": (5, 0, 5)}
    assert later.sources[0].reasons == {"duplicate_event": 4, "missing_user_id": 1}
    assert store.read_table(S.EVENTS).count() == 4
    detail = store.read_table(S.QUARANTINE).filter("run_id = 'run-2' AND reason = 'duplicate_event'").first()
    assert detail is not None and "already ingested by run run-1" in detail.detail

    # an item's first event is the earliest any run saw: a later export with an older sale moves it back
    older = "536000,85123A,WHITE HANGING HEART T-LIGHT HOLDER,1,2009-06-01 09:00:00,2.55,17850,United Kingdom"
    run_ingest(
        spark, store, ingest_settings(settings, c=source(write_csv(tmp_path / "c.csv", [older]))), "run-3"
    )
    seen = {r.item_id: str(r.first_seen_ts) for r in store.read_table(S.ITEMS).collect()}
    assert seen["85123A"] == "2009-06-01 09:00:00" and seen["71053"] == "2010-12-01 08:26:00"


def test_accounting_mismatch_fails_the_run(
    spark: SparkSession,
    store: TableStore,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = ingest_settings(settings, a=source(write_csv(tmp_path / "a.csv", LINES_A)))
    real = stage._valid_events
    monkeypatch.setattr(stage, "_valid_events", lambda events, run_id: real(events, run_id).limit(1))
    with pytest.raises(
        AccountingError, match="source 'a': 5 rows in, but 1 landed in 'events' and 1 in 'quarantine'"
    ):
        run_ingest(spark, store, cfg, "run-1")


def test_garbage_lines_are_quarantined_not_dropped(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        (HEADER + "\n" + LINES_A[0] + "\n").encode()
        + b"\x00\xff\xfe\x01 binary junk\n"
        + b"1,2,3\n"
        + (LINES_A[1] + ",extra,fields\n").encode()
    )
    report = run_ingest(spark, store, ingest_settings(settings, m=source(path)), "run-1")
    assert counts(report) == {"m": (4, 1, 3)}
    assert report.sources[0].reasons == {"malformed_row": 3}
    raws = [r.raw for r in store.read_table(S.QUARANTINE).collect()]
    assert any("binary junk" in r for r in raws) and "1,2,3" in raws


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda p: p / "absent.csv", ["source 'x'", "absent.csv", "no such file"]),
        (lambda p: (p / "empty.csv").write_text("") or p / "empty.csv", ["source 'x'", "empty"]),
        (
            lambda p: write_csv(p / "renamed.csv", LINES_A, HEADER.replace("CustomerID", "Customer")),
            ["source 'x'", "column 'CustomerID' (mapped to user_id) is missing", "'Customer'"],
        ),
        (
            lambda p: put(p / "fake.csv.gz", b"this is not gzip\n1,2,3\n"),
            ["source 'x'", "fake.csv.gz", "not a gzip file"],
        ),
    ],
    ids=["missing-file", "empty-file", "wrong-header", "not-gzip"],
)
def test_bad_files_fail_naming_source_and_column(
    spark: SparkSession,
    store: TableStore,
    settings: Settings,
    tmp_path: Path,
    make: Any,
    fragments: list[str],
) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        run_ingest(spark, store, ingest_settings(settings, x=source(path)), "run-1")
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in {err.value}"
    assert not store.exists(S.EVENTS), "nothing may be written from a bad file"


def _parquet_events(path: Path, quantity: pa.Array) -> Path:
    table = pa.table(
        {
            "InvoiceNo": ["1", "2"],
            "StockCode": ["A", "B"],
            "Description": ["a", "b"],
            "Quantity": quantity,
            "InvoiceDate": pa.array([1291191960000000, 1291191960000000], pa.timestamp("us", tz="UTC")),
            "UnitPrice": [1.5, 2.0],
            "CustomerID": [17850, None],
            "Country": ["UK", "UK"],
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")
    return path


def test_typed_parquet_source(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    path = _parquet_events(tmp_path / "events_parquet", pa.array([3, 4], pa.int64()))
    report = run_ingest(spark, store, ingest_settings(settings, p=source(path, fmt="parquet")), "run-1")
    assert counts(report) == {"p": (2, 1, 1)}
    row = store.read_table(S.EVENTS).first()
    assert row is not None and (row.user_id, row.quantity, str(row.event_ts)) == (
        "17850",
        3,
        "2010-12-01 08:26:00",
    )


def test_parquet_column_of_the_wrong_type(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    path = _parquet_events(tmp_path / "bad_parquet", pa.array([True, False]))
    with pytest.raises(InputError, match="column 'Quantity' \\(mapped to quantity\\) has type boolean"):
        run_ingest(spark, store, ingest_settings(settings, p=source(path, fmt="parquet")), "run-1")


def test_catalog_and_user_sources(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    catalog = write_csv(
        tmp_path / "items.csv",
        ["85123A,Heart holder (catalog),3.0", "85123A,Duplicate row,3.1", ",No id,1.0", "99999,Never sold,x"],
        header="sku,name,price",
    )
    people = write_csv(
        tmp_path / "users.csv", ["17850,Norway", "99,Iceland", ",Nowhere"], header="id,country"
    )
    cfg = ingest_settings(
        settings,
        a=source(write_csv(tmp_path / "a.csv", LINES_A)),
        cat=source(
            catalog, table="items", columns={"item_id": "sku", "title": "name", "unit_price": "price"}
        ),
        ppl=source(people, table="users", columns={"user_id": "id", "country": "country"}),
    )
    report = run_ingest(spark, store, cfg, "run-1")
    assert counts(report) == {"a": (5, 4, 1), "cat": (4, 1, 3), "ppl": (3, 2, 1)}
    assert {s.source: s.reasons for s in report.sources}["cat"] == {
        "duplicate_item": 1,
        "missing_item_id": 1,
        "bad_price": 1,
    }
    items = {r.item_id: r for r in store.read_table(S.ITEMS).collect()}
    assert items["85123A"].title == "Heart holder (catalog)"  # the catalog wins over event titles
    assert items["71053"].title == "WHITE METAL LANTERN"  # items only seen in events are kept
    users = {r.user_id: r.country for r in store.read_table(S.USERS).collect()}
    assert users == {"17850": "Norway", "14527": "United Kingdom", "99": "Iceland"}


def test_reading_an_export_again_keeps_the_catalog_and_a_catalog_source_renames(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    """The sample's rerun bug: on the second read every event is a duplicate, so the items came from the
    rows without a customer id alone (here one with no title and no price) and lost their titles."""
    no_customer = "536390,71053,,1,2010-12-01 10:00:00,0,,United Kingdom"
    cfg = ingest_settings(settings, a=source(write_csv(tmp_path / "a.csv", [*LINES_A, no_customer])))

    def catalog() -> dict[str, tuple[str | None, float | None, str]]:
        rows = store.read_table(S.ITEMS).collect()
        return {r.item_id: (r.title, r.unit_price, str(r.first_seen_ts)) for r in rows}

    run_ingest(spark, store, cfg, "run-1")
    first = catalog()
    assert first["71053"] == ("WHITE METAL LANTERN", 3.39, "2010-12-01 08:26:00")
    run_ingest(spark, store, cfg, "run-2")
    assert catalog() == first
    renamed = write_csv(tmp_path / "items.csv", ["71053,Lantern (catalog),3.5"], header="sku,name,price")
    columns = {"item_id": "sku", "title": "name", "unit_price": "price"}
    with_catalog = cfg.sources | {"cat": source(renamed, "items", columns=columns)}
    run_ingest(spark, store, cfg.model_copy(update={"sources": with_catalog}), "run-3")
    assert catalog() == first | {"71053": ("Lantern (catalog)", 3.5, "2010-12-01 08:26:00")}


SPELLINGS = [
    # one product each, spelled as the real exports do (case, surrounding spaces)
    "536400,82001S,SILVER RECORD COVER FRAME,1,2010-12-01 10:00:00,3.39,17850,United Kingdom",
    "536401,82001s ,SILVER RECORD COVER FRAME,2,2010-12-02 10:00:00,3.39,14527,United Kingdom",
    "536402,15056P,EDWARDIAN PARASOL PINK,1,2010-12-02 11:00:00,5.95,17850,United Kingdom",
    "536403,15056p,EDWARDIAN PARASOL PINK,1,2010-12-03 11:00:00,5.95,14527,United Kingdom",
    "536404, 35004C,SET OF 3 COLOURED FLYING DUCKS,1,2010-12-03 12:00:00,4.65,17850,United Kingdom",
    "536405,35004c,SET OF 3 COLOURED FLYING DUCKS,1,2010-12-04 12:00:00,4.65,14527,United Kingdom",
]


@pytest.mark.parametrize(("fold", "items", "merged"), [(True, 3, 3), (False, 6, 0)])
def test_item_ids_are_trimmed_and_case_folded_by_config(
    spark: SparkSession,
    store: TableStore,
    settings: Settings,
    tmp_path: Path,
    fold: bool,
    items: int,
    merged: int,
) -> None:
    cfg = ingest_settings(settings, a=source(write_csv(tmp_path / "a.csv", SPELLINGS)))
    report = run_ingest(spark, store, cfg.model_copy(update={"fold_item_id_case": fold}), "run-1")
    (counted,) = report.sources
    assert (counted.valid, counted.distinct_items, counted.merged_spellings) == (6, items, merged)
    ids = {r.item_id for r in store.read_table(S.ITEMS).collect()}
    assert ids == (
        {"82001S", "15056P", "35004C"}
        if fold
        else {"82001S", "82001s", "15056P", "15056p", "35004C", "35004c"}
    )
    assert "merged" in report.format()
