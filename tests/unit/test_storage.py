"""The storage guarantees: real Delta, type fidelity, atomic commits, idempotent reruns."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from genre_spark import schemas as S
from genre_spark.errors import SchemaMismatchError, TableNotFoundError, WriteConflictError
from genre_spark.storage import AppendIfAbsent, TableStore
from genre_spark.storage.embedded import EmbeddedDeltaStore
from genre_spark.storage.native import with_user_metadata

TYPED = T.StructType(
    [
        T.StructField("as_of", T.DateType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("price", T.DoubleType()),
        T.StructField("amount", T.DecimalType(12, 3)),
        T.StructField("n", T.LongType()),
        T.StructField("tags", T.ArrayType(T.StringType())),
        T.StructField("scores", T.MapType(T.StringType(), T.DoubleType())),
        T.StructField("label", T.StringType()),
        T.StructField("flag", T.BooleanType()),
    ]
)
TYPED_ROWS = [
    (
        dt.date(2011, 12, 9),
        dt.datetime(2011, 12, 9, 12, 50, 1, 123456),
        2.55,
        Decimal("10.125"),
        2**40,
        ["gift", "candle"],
        {"als": 0.5},
        "WHITE HANGING HEART",
        True,
    ),
    (dt.date(2011, 12, 9), None, None, None, None, None, None, None, None),
    (dt.date(2011, 12, 10), dt.datetime(1999, 1, 1), -0.0, Decimal("-1.000"), -1, [], {}, "ünïcode ✓", False),
]


def typed_df(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(TYPED_ROWS, TYPED)


def one_column(spark: SparkSession, values: list[int]) -> DataFrame:
    return spark.createDataFrame([(v,) for v in values], "v int")


def test_types_round_trip_through_spark(spark: SparkSession, store: TableStore) -> None:
    store.write_table(typed_df(spark), "typed", mode="append", run_id="r1")
    assert_df_equality(store.read_table("typed").orderBy("label"), typed_df(spark).orderBy("label"))


def test_partitioned_types_round_trip(spark: SparkSession, store: TableStore) -> None:
    store.write_table(typed_df(spark), "typed", mode="append", run_id="r1", partition_by=["as_of"])
    back = store.read_table("typed")
    assert back.schema == TYPED  # partition column keeps its type and position
    assert_df_equality(back.orderBy("label"), typed_df(spark).orderBy("label"))


def test_tables_are_real_delta_readable_by_delta_rs(spark: SparkSession, store: TableStore) -> None:
    store.write_table(typed_df(spark), "typed", mode="append", run_id="r1", partition_by=["as_of"])
    table = DeltaTable(store.table_path("typed"))
    arrow = pa.table(table.to_pyarrow_table())
    assert arrow.num_rows == 3
    assert arrow.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert arrow.schema.field("amount").type == pa.decimal128(12, 3)
    by_label = {r["label"]: r for r in arrow.to_pylist()}
    assert by_label["WHITE HANGING HEART"]["ts"] == dt.datetime(
        2011, 12, 9, 12, 50, 1, 123456, tzinfo=dt.timezone.utc
    )
    assert by_label["WHITE HANGING HEART"]["tags"] == ["gift", "candle"]
    assert table.metadata().partition_columns == ["as_of"]


def test_contract_schema_is_the_delta_schema(spark: SparkSession, store: TableStore) -> None:
    empty = spark.createDataFrame([], S.CONTRACTS[S.EVENTS])
    store.write_table(empty, S.EVENTS, mode="append", run_id="r1")
    fields = DeltaTable(store.table_path(S.EVENTS)).schema().fields
    assert [f.name for f in fields] == S.CONTRACTS[S.EVENTS].names
    assert {f.name: str(f.type) for f in fields}["event_ts"] == 'PrimitiveType("timestamp")'
    assert store.read_table(S.EVENTS).count() == 0


def test_history_has_one_version_per_committed_write(spark: SparkSession, store: TableStore) -> None:
    store.write_table(one_column(spark, [1, 2]), "t", mode="append", run_id="a")
    store.write_table(one_column(spark, [3]), "t", mode="append", run_id="b")
    store.write_table(one_column(spark, [4]), "t", mode="overwrite", run_id="c")
    history = store.history("t")
    assert [h["version"] for h in history] == [2, 1, 0]
    assert [h["genre_spark.run_id"] for h in history] == ["c", "b", "a"]
    assert sorted(r.v for r in store.read_table("t").collect()) == [4]
    assert sorted(r.v for r in store.read_table("t", version=1).collect()) == [1, 2, 3]


def test_append_rerun_of_same_run_id_is_skipped(spark: SparkSession, store: TableStore) -> None:
    first = store.write_table(one_column(spark, [1, 2]), "t", mode="append", run_id="run-1")
    again = store.write_table(one_column(spark, [1, 2]), "t", mode="append", run_id="run-1")
    assert (first.skipped, again.skipped) == (False, True)
    assert (first.version, again.version, first.rows) == (0, 0, 2)
    assert store.read_table("t").count() == 2
    assert len(list(Path(store.table_path("t")).glob("*.parquet"))) == first.files, "rerun wrote files"


def test_replace_where_replaces_one_partition_idempotently(spark: SparkSession, store: TableStore) -> None:
    day1, day2 = dt.date(2011, 12, 8), dt.date(2011, 12, 9)
    schema = "as_of date, v int"
    both = spark.createDataFrame([(day1, 1), (day2, 2)], schema)
    store.write_table(both, "recs", mode="append", run_id="init", partition_by=["as_of"])

    new_day2 = spark.createDataFrame([(day2, 20), (day2, 21)], schema)
    kwargs = {"mode": "overwrite", "partition_by": ["as_of"], "replace_where": {"as_of": day2}}
    first = store.write_table(new_day2, "recs", run_id="run-2", **kwargs)  # type: ignore[arg-type]
    again = store.write_table(new_day2, "recs", run_id="run-2", **kwargs)  # type: ignore[arg-type]
    assert (first.skipped, again.skipped) == (False, True)
    expected = spark.createDataFrame([(day1, 1), (day2, 20), (day2, 21)], schema)
    assert_df_equality(store.read_table("recs"), expected, ignore_row_order=True)
    # a different partition in the same run is a different write
    other = spark.createDataFrame([(day1, 10)], schema)
    store.write_table(
        other, "recs", run_id="run-2", mode="overwrite", partition_by=["as_of"], replace_where={"as_of": day1}
    )
    assert sorted(r.v for r in store.read_table("recs").collect()) == [10, 20, 21]


def test_the_newest_replacement_of_a_partition_and_its_tags(spark: SparkSession, store: TableStore) -> None:
    day1, day2 = dt.date(2011, 12, 8), dt.date(2011, 12, 9)
    schema = "as_of date, v int"
    assert store.partition_commit("recs", day1) is None  # no table
    first = spark.createDataFrame([(day1, 1)], schema)
    store.write_table(first, "recs", mode="append", run_id="init", partition_by=["as_of"])
    assert store.partition_commit("recs", day1) is None  # an append replaces no partition
    for run_id, day, tag in [("a", day1, "x"), ("b", day2, "y"), ("c", day1, "z")]:
        store.commit_tags = {"genre_spark.stage_settings": tag}
        rows = spark.createDataFrame([(day, 2)], schema)
        store.replace_date(rows, "recs", as_of=day, run_id=run_id, stage="s")
    newest = store.partition_commit("recs", day1)
    assert newest is not None
    assert (newest["genre_spark.run_id"], newest["genre_spark.stage_settings"]) == ("c", "z")
    assert store.partition_commit("recs", day2)["genre_spark.run_id"] == "b"  # type: ignore[index]
    assert store.partition_commit("recs", dt.date(2011, 12, 10)) is None


def test_native_commit_metadata_is_read_back_as_keys() -> None:
    recorded = {"userMetadata": json.dumps({"genre_spark.run_id": "r", "genre_spark.partition": "as_of=x"})}
    assert with_user_metadata(recorded)["genre_spark.partition"] == "as_of=x"
    legacy = {"userMetadata": "genre_spark.run_id=old-run"}  # what earlier versions wrote
    assert with_user_metadata(legacy)["genre_spark.run_id"] == "old-run"
    foreign = {"userMetadata": "nightly compaction"}  # another writer's: kept as it is
    assert with_user_metadata(foreign) == foreign


def test_a_rebalanced_date_is_written_as_few_files(spark: SparkSession, store: TableStore) -> None:
    """Eight small partitions: eight files as computed, one file when rebalanced (adaptive query
    execution coalesces the shuffle by user), the same rows either way."""
    day = dt.date(2011, 12, 9)
    lists = spark.range(800, numPartitions=8).selectExpr(
        "cast(id % 80 as string) as user_id", "cast(id as int) as v", f"date'{day}' as as_of"
    )
    for name, rebalance in [("as_computed", False), ("rebalanced", True)]:
        result = store.replace_date(lists, name, as_of=day, run_id="r", stage="s", rebalance=rebalance)
        assert result.files == (1 if rebalance else 8), name
        assert_df_equality(store.read_table(name), lists, ignore_row_order=True, ignore_nullable=True)


def test_replace_where_rejects_rows_outside_the_partition(spark: SparkSession, store: TableStore) -> None:
    df = spark.createDataFrame([(dt.date(2011, 12, 8), 1)], "as_of date, v int")
    with pytest.raises(ValueError, match="replace_where as_of=2011-12-09"):
        store.write_table(
            df,
            "recs",
            mode="overwrite",
            run_id="x",
            partition_by=["as_of"],
            replace_where={"as_of": dt.date(2011, 12, 9)},
        )
    assert not store.exists("recs")


def test_failure_before_commit_leaves_previous_version(
    spark: SparkSession, store: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_table(one_column(spark, [1]), "t", mode="append", run_id="good")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between file write and commit")

    monkeypatch.setattr(EmbeddedDeltaStore, "_commit", crash)
    # a killed process runs no clean-up either: the files it moved stay on disk
    monkeypatch.setattr(EmbeddedDeltaStore, "_discard", lambda self, fs, files: None)
    with pytest.raises(RuntimeError, match="killed"):
        store.write_table(one_column(spark, [2, 3]), "t", mode="overwrite", run_id="bad")

    parquet_files = list(Path(store.table_path("t")).glob("*.parquet"))
    assert len(parquet_files) > 1, "the crashed write should have left stray files"
    assert store.version("t") == 0
    assert [r.v for r in store.read_table("t").collect()] == [1]
    assert pa.table(DeltaTable(store.table_path("t")).to_pyarrow_table()).num_rows == 1

    monkeypatch.undo()  # the retry of the crashed run commits normally
    retry = store.write_table(one_column(spark, [2, 3]), "t", mode="overwrite", run_id="bad")
    assert not retry.skipped
    assert sorted(r.v for r in store.read_table("t").collect()) == [2, 3]


def test_failed_commit_cleans_up_its_files(
    spark: SparkSession, store: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_table(one_column(spark, [1]), "t", mode="append", run_id="good")
    before = set(Path(store.table_path("t")).rglob("*.parquet"))

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("commit refused")

    monkeypatch.setattr(EmbeddedDeltaStore, "_commit", crash)
    with pytest.raises(RuntimeError):
        store.write_table(one_column(spark, [2]), "t", mode="append", run_id="bad")
    assert set(Path(store.table_path("t")).rglob("*.parquet")) == before


def test_contract_is_enforced(spark: SparkSession, store: TableStore) -> None:
    wrong = spark.createDataFrame([("e1", "u1", 3)], "event_id string, user_id string, quantity long")
    with pytest.raises(SchemaMismatchError) as err:
        store.write_table(wrong, S.EVENTS, mode="append", run_id="r")
    message = str(err.value)
    assert "table 'events'" in message
    assert "column 'quantity': expected int, found bigint" in message
    assert "missing column 'item_id'" in message
    assert not store.exists(S.EVENTS)


def test_existing_schema_is_enforced(spark: SparkSession, store: TableStore) -> None:
    store.write_table(one_column(spark, [1]), "t", mode="append", run_id="a")
    other = spark.createDataFrame([("x",)], "v string")
    with pytest.raises(SchemaMismatchError, match="column 'v': expected int, found string"):
        store.write_table(other, "t", mode="append", run_id="b")


def test_missing_table(store: TableStore) -> None:
    with pytest.raises(TableNotFoundError, match="table 'nope' does not exist"):
        store.read_table("nope")
    assert store.version("nope") is None


def test_file_stats_allow_pruning(spark: SparkSession, store: TableStore) -> None:
    store.write_table(typed_df(spark), "typed", mode="append", run_id="r1", partition_by=["as_of"])
    adds = pa.table(DeltaTable(store.table_path("typed")).get_add_actions(flatten=True)).to_pylist()
    assert sum(a["num_records"] for a in adds) == 3
    full = next(a for a in adds if a.get("min.label") == "WHITE HANGING HEART")
    assert full["min.price"] == 2.55 and full["max.n"] == 2**40
    # timestamps are widened to whole milliseconds, never narrowed
    assert (
        full["min.ts"]
        <= dt.datetime(2011, 12, 9, 12, 50, 1, 123456, tzinfo=dt.timezone.utc)
        <= full["max.ts"]
    )


def test_two_stages_of_one_run_both_write_a_table(spark: SparkSession, store: TableStore) -> None:
    """ingest and enrich both overwrite ``items`` in one run: the second is not a rerun of the first."""
    store.write_table(one_column(spark, [1]), "t", mode="overwrite", run_id="run", stage="ingest")
    second = store.write_table(one_column(spark, [2]), "t", mode="overwrite", run_id="run", stage="enrich")
    assert not second.skipped
    assert [r.v for r in store.read_table("t").collect()] == [2]
    again = store.write_table(one_column(spark, [3]), "t", mode="overwrite", run_id="run", stage="enrich")
    assert again.skipped


def test_reports_go_through_the_warehouse_filesystem(spark: SparkSession, tmp_path: Path) -> None:
    """Reports are written and read through the warehouse's pyarrow filesystem, never a local path: a
    non-local one (pyarrow's in-memory mock, standing in for s3:// or abfss://) receives them."""
    store = EmbeddedDeltaStore(spark, str(tmp_path / "warehouse"))
    remote, root = pafs.FileSystem.from_uri("mock:///bucket/warehouse")
    store._filesystems[store.warehouse] = (remote, root)
    assert (
        store.write_report("run-1/report.html", b"<html>") == f"{store.warehouse}/_reports/run-1/report.html"
    )
    assert remote.get_file_info(f"{root}/_reports/run-1/report.html").size == len(b"<html>")
    assert store.read_report("run-1/report.html") == b"<html>" and store.read_report("nope.png") is None
    assert not (tmp_path / "warehouse").exists()


def _another_writer_commits_first(
    monkeypatch: pytest.MonkeyPatch, spark: SparkSession, store: TableStore, values: list[int]
) -> None:
    """Make a second writer (another process, as far as the table knows) commit ``values`` to ``t``
    after this write read the table and before it commits."""
    publish = EmbeddedDeltaStore._publish

    def race(self: EmbeddedDeltaStore, *args: Any) -> Any:
        monkeypatch.setattr(EmbeddedDeltaStore, "_publish", publish)  # the other writer's own publish
        other = EmbeddedDeltaStore(spark, store.warehouse)
        other.write_table(one_column(spark, values), "t", mode="append", run_id="other")
        return publish(self, *args)

    monkeypatch.setattr(EmbeddedDeltaStore, "_publish", race)


@pytest.mark.parametrize("table_existed", [True, False])
def test_append_if_absent_loses_to_a_commit_since_its_read(
    spark: SparkSession, store: TableStore, monkeypatch: pytest.MonkeyPatch, table_existed: bool
) -> None:
    """Two overlapping deduplicating appends leave one copy: the one that read an older version than
    the table holds at commit time writes nothing and raises the exit-5 error, also when both created
    the table."""
    if table_existed:
        store.write_table(one_column(spark, [0]), "t", mode="append", run_id="seed")
    read = AppendIfAbsent("v", store.version("t"))
    _another_writer_commits_first(monkeypatch, spark, store, [1, 2])
    with pytest.raises(WriteConflictError, match="table 't': concurrent commit, nothing written") as exc:
        store.write_table(one_column(spark, [1, 2]), "t", mode="append", run_id="mine", if_absent=read)
    assert exc.value.exit_code == 5
    assert sorted(r.v for r in store.read_table("t").collect()) == [0, 1, 2][0 if table_existed else 1 :]
    assert store.history("t")[0]["genre_spark.run_id"] == "other"


def test_append_if_absent_checks_before_writing_and_rerun_is_skipped(
    spark: SparkSession, store: TableStore
) -> None:
    first = store.write_table(
        one_column(spark, [1]), "t", mode="append", run_id="a", if_absent=AppendIfAbsent("v", None)
    )
    assert not first.skipped
    stale = AppendIfAbsent("v", None)  # read before run a created the table
    files = set(Path(store.table_path("t")).rglob("*.parquet"))
    with pytest.raises(WriteConflictError, match=r"since this run read it \(version none, now 0\)"):
        store.write_table(one_column(spark, [1]), "t", mode="append", run_id="b", if_absent=stale)
    assert set(Path(store.table_path("t")).rglob("*.parquet")) == files  # failed before writing a file
    # the retry of run a reads the table as it is now and finds its write committed
    again = store.write_table(
        one_column(spark, [1]), "t", mode="append", run_id="a", if_absent=AppendIfAbsent("v", 0)
    )
    assert again.skipped and store.read_table("t").count() == 1


def test_a_table_created_by_another_writer_is_a_conflict(
    spark: SparkSession, store: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first writes of one table: the loser gets the exit-5 error, not delta-rs's 'already exists'."""
    _another_writer_commits_first(monkeypatch, spark, store, [1])
    with pytest.raises(WriteConflictError, match="created by another writer"):
        store.write_table(one_column(spark, [2]), "t", mode="append", run_id="mine")
    assert [r.v for r in store.read_table("t").collect()] == [1]


def test_a_full_overwrite_adds_the_columns_the_contract_gained(
    spark: SparkSession, store: TableStore
) -> None:
    """A warehouse written before a contract gained a column (items.first_seen_ts) takes the next full
    overwrite with it; an append with the extra column still fails."""
    store.write_table(one_column(spark, [1]), "t", mode="overwrite", run_id="old")
    wider = spark.createDataFrame([(2, "x")], "v int, w string")
    with pytest.raises(SchemaMismatchError, match=r"unexpected column\(s\) \['w'\]"):
        store.write_table(wider, "t", mode="append", run_id="new")
    store.write_table(wider, "t", mode="overwrite", run_id="new")
    assert [tuple(r) for r in store.read_table("t").collect()] == [(2, "x")]
    assert [f.name for f in DeltaTable(store.table_path("t")).schema().fields] == ["v", "w"]
