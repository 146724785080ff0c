"""Scheduled refresh: incremental folder ingest, backfill over dates, retention, the latest pointer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.cli import build_parser
from genre_spark.config import Settings, default_run_id
from genre_spark.ingest import run_ingest
from genre_spark.pipeline import RunContext
from genre_spark.refresh import (
    apply_retention,
    backfill,
    move_latest_pointer,
    read_latest_recommendations,
)
from genre_spark.storage import TableStore
from genre_spark.strategy import context_for, load_strategies
from tests.integration.test_notebooks import sample_slice

pytestmark = pytest.mark.slow
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
SOURCE = "online_retail_2010_2011"


def folder_settings(settings: Settings, path: Path) -> Settings:
    sources = {
        "online_retail_ii_2009_2010": settings.ingest.sources["online_retail_ii_2009_2010"].model_copy(
            update={"enabled": False}
        ),
        SOURCE: settings.ingest.sources[SOURCE].model_copy(update={"path": str(path)}),
    }
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"sources": sources})})


def lines(invoice: int, n: int) -> str:
    rows = [
        f"{invoice},2{i:04d},ITEM {i},{i % 5 + 1},2010-12-01 08:{i % 60:02d}:00,1.5,{17000 + i % 7},France"
        for i in range(n)
    ]
    return "\n".join([HEADER, *rows]) + "\n"


def test_folder_source_ingests_only_new_files(
    spark: SparkSession, settings: Settings, store: TableStore, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "day1.csv").write_text(lines(600001, 30))
    cfg = folder_settings(settings, folder).ingest

    first = run_ingest(spark, store, cfg, "day-1")
    assert [(s.source, s.rows_in, s.valid) for s in first.sources] == [(SOURCE, 30, 30)]
    assert first.new_files == {SOURCE: 1}

    (folder / "day2.csv").write_text(lines(600002, 12))
    second = run_ingest(spark, store, cfg, "day-2")
    assert [(s.source, s.rows_in, s.valid) for s in second.sources] == [(SOURCE, 12, 12)]  # day2 only
    assert second.new_files == {SOURCE: 1}
    assert store.read_table(S.EVENTS).count() == 42
    files = store.read_table(S.INGESTED_FILES).orderBy("path").collect()
    assert [(Path(r["path"]).name, r[S.RUN_ID]) for r in files] == [
        ("day1.csv", "day-1"),
        ("day2.csv", "day-2"),
    ]

    versions = {t: store.version(t) for t in (S.EVENTS, S.QUARANTINE, S.INGESTED_FILES, S.ITEMS)}
    third = run_ingest(spark, store, cfg, "day-3")  # nothing new: nothing read, nothing committed
    assert third.sources == [] and third.new_files == {SOURCE: 0} and "nothing to ingest" in third.format()
    assert {t: store.version(t) for t in versions} == versions

    rerun = run_ingest(spark, store, cfg, "day-2")  # a retry of run day-2 sees the same new file
    assert [s.rows_in for s in rerun.sources] == [12] and all(w.skipped for w in rerun.writes)


def test_backfill_three_dates_then_rerun_adds_nothing(
    spark: SparkSession, settings: Settings, store: TableStore, tmp_path: Path
) -> None:
    cfg = folder_settings(settings, sample_slice(tmp_path, rows=5_000))
    strategies = load_strategies(cfg.strategies_file)

    def context_of(day: dt.date) -> RunContext:
        ctx = context_for(day, None, cfg.features.hour_bands)
        return RunContext(spark, store, cfg, day, default_run_id(cfg, day), strategies, ctx)

    start, end = dt.date(2010, 12, 3), dt.date(2010, 12, 5)
    outcomes = backfill(context_of, start, end, ["ingest", "features"])
    assert [(o.as_of, o.skipped, [r.stage for r in o.results]) for o in outcomes] == [
        (start, False, ["ingest", "features"]),
        (dt.date(2010, 12, 4), False, ["features"]),
        (end, False, ["features"]),
    ]
    partitions = store.read_table(S.USER_FEATURES).groupBy(S.AS_OF).count().orderBy(S.AS_OF).collect()
    assert [r[S.AS_OF] for r in partitions] == [start, dt.date(2010, 12, 4), end]
    assert all(r["count"] > 10 for r in partitions)
    assert store.read_table(S.RUNS).count() == 3

    tables = (S.EVENTS, S.QUARANTINE, S.ITEMS, S.USERS, S.USER_FEATURES, S.RUNS)
    versions = {t: store.version(t) for t in tables}
    again = backfill(context_of, start, end, ["ingest", "features"])
    assert [o.skipped for o in again] == [True, True, True]
    assert {t: store.version(t) for t in tables} == versions

    args = build_parser().parse_args(
        ["backfill", "--from", "2010-12-03", "--to", "2010-12-05", "--stage", "features"]
    )
    assert (args.date_from, args.date_to, args.stage) == (start, end, ["features"])


def recommendations(spark: SparkSession, as_of: dt.date, run_id: str, users: int) -> DataFrame:
    rows = [(run_id, as_of, f"u{i}", 1, "i1", 1.0, 0, "default", ["als"], "x", "v") for i in range(users)]
    return spark.createDataFrame(rows, S.contract(S.RECOMMENDATIONS))


def test_retention_and_latest_pointer(spark: SparkSession, store: TableStore) -> None:
    days = [dt.date(2011, 12, d) for d in (1, 2, 3)]
    for i, day in enumerate(days):
        df = recommendations(spark, day, f"run-{day}", users=i + 1)
        store.replace_date(df, S.RECOMMENDATIONS, as_of=day, run_id=f"run-{day}", stage="ranking")
        move_latest_pointer(store, day, f"run-{day}")
    latest = read_latest_recommendations(store)
    assert latest.count() == 3 and {r[S.RUN_ID] for r in latest.collect()} == {"run-2011-12-03"}

    assert "stays at 2011-12-03" in move_latest_pointer(store, days[0], "run-2011-12-01")  # older: no move
    assert "already" in move_latest_pointer(store, days[2], "run-2011-12-03")

    assert "off" in apply_retention(store, None, days[2], "run-2011-12-03")
    before = store.version(S.RECOMMENDATIONS)
    note = apply_retention(store, 1, days[2], "run-2011-12-03")  # keep as_of >= 2011-12-02
    assert note.startswith("retention: deleted 1 'recommendations' rows before 2011-12-02")
    assert store.version(S.RECOMMENDATIONS) == (before or 0) + 1
    kept = store.read_table(S.RECOMMENDATIONS).select(S.AS_OF).distinct().orderBy(S.AS_OF).collect()
    assert [r[S.AS_OF] for r in kept] == days[1:]
    assert "no 'recommendations' partition" in apply_retention(store, 1, days[2], "run-2011-12-03")
    assert store.version(S.RECOMMENDATIONS) == (before or 0) + 1
    assert store.read_table(S.RECOMMENDATIONS).filter(F.col(S.AS_OF) < days[1]).count() == 0
