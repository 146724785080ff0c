"""Embedded Delta back-end: Spark writes Parquet in parallel, the driver commits those files with delta-rs.

Protocol of one write (DESIGN section 3):

1. If the table already records this write's app-transaction id, return at once: a rerun of a
   run id writes no file at all (delta-rs records app transactions but does not enforce them).
2. Spark writes the data as Parquet into ``<table>/_staging/<uuid>/`` (hidden from every reader).
3. The driver moves exactly those files into the table's Hive layout (``<table>/<k>=<v>/part-...``;
   Spark's file names carry the write job's UUID, so they never collide) and reads each footer for
   the Delta statistics.
4. One Delta commit adds those files (and, for overwrites, removes the replaced ones) together with
   the app transaction. Until it lands, the files are not in the snapshot, and reads go through the
   snapshot's file list only, so a write killed at any point leaves the table at its last version.
   Files of a killed write are garbage for ``VACUUM``.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from genre_spark.errors import SchemaMismatchError, TableNotFoundError, WriteConflictError
from genre_spark.schemas import contract
from genre_spark.storage.base import (
    TableStore,
    WriteRequest,
    WriteResult,
    check_schema,
    check_unchanged,
    commit_metadata,
    with_added_columns,
)
from genre_spark.storage.locations import Locator
from genre_spark.storage.parquet_stats import delta_stats_json

_STAGING = "_staging"
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


class EmbeddedDeltaStore(TableStore):
    backend = "embedded"

    def __init__(self, spark: SparkSession, warehouse: str, locator: Locator | None = None) -> None:
        super().__init__(spark, warehouse, locator)
        # Spark's default INT96 timestamps come back from delta-rs as timestamp[ns] without zone,
        # which it then cannot read; micros are what Delta expects.
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")

    # ------------------------------------------------------------------ reads

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.table_path(name))

    def _open(self, name: str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.table_path(name), version=version)
        except DeltaTableNotFound:
            return None

    def version(self, name: str) -> int | None:
        table = self._open(name)
        return None if table is None else table.version()

    def history(self, name: str) -> list[dict[str, Any]]:
        table = self._open(name)
        if table is None:
            raise TableNotFoundError(name, self.table_path(name))
        return table.history()

    def read_table(self, name: str, *, version: int | None = None) -> DataFrame:
        table = self._open(name, version)
        if table is None:
            raise TableNotFoundError(name, self.table_path(name))
        return _read_snapshot(self.spark, table, self.table_path(name), contract(name))

    # ------------------------------------------------------------------ writes

    def _write(self, df: DataFrame, request: WriteRequest) -> WriteResult:
        name = request.table
        table = self._open(name)
        if table is not None:
            if table.transaction_version(request.app_id) is not None:
                return WriteResult(name, table.version(), skipped=True)
            self._check_compatible(name, table, df.schema, request)
        check_unchanged(name, None if table is None else table.version(), request)

        staging = f"{_STAGING}/{uuid.uuid4().hex}"
        writer = df.write.mode("errorifexists")
        if request.partition_by:
            writer = writer.partitionBy(*request.partition_by)
        writer.parquet(f"{self.table_path(name)}/{staging}")

        fs, fs_table = self._fs_table(name)
        published: list[str] = []
        try:
            adds = self._publish(name, staging, published)
            _check_inside(name, adds, request.replace_where)
            self._commit(table, adds, df.schema, request)
        except CommitFailedError as exc:
            self._discard(fs, published)
            latest = self._open(name)
            if latest is not None and latest.transaction_version(request.app_id) is not None:
                return WriteResult(name, latest.version(), skipped=True)  # a concurrent rerun won
            raise WriteConflictError(f"table '{name}': concurrent commit, nothing written: {exc}") from exc
        except BaseException:
            self._discard(fs, published)
            raise
        finally:
            _delete_dir(fs, f"{fs_table}/{staging}")
        rows = sum(_stats_rows(a) for a in adds)
        return WriteResult(name, self.version(name), skipped=False, files=len(adds), rows=rows)

    def delete_where(self, name: str, predicate: str, *, run_id: str) -> WriteResult:
        table = self._open(name)
        if table is None:
            raise TableNotFoundError(name, self.table_path(name))
        if self.read_table(name).filter(predicate).limit(1).count() == 0:
            return WriteResult(name, table.version(), skipped=True)
        metrics = table.delete(
            predicate,
            commit_properties=CommitProperties(
                custom_metadata=commit_metadata(name, run_id, {}, self.commit_tags)
            ),
        )
        return WriteResult(name, table.version(), skipped=False, rows=int(metrics.get("num_deleted_rows", 0)))

    def _fs_table(self, name: str) -> tuple[pafs.FileSystem, str]:
        """The table's filesystem and its folder in it (tables may live outside the warehouse)."""
        return self.filesystem(self.table_path(name))

    def _publish(self, name: str, staging: str, published: list[str]) -> list[AddAction]:
        """Move the staged Parquet files into the table layout; return their AddActions."""
        fs, fs_table = self._fs_table(name)
        fs_staging = f"{fs_table}/{staging}"
        selector = pafs.FileSelector(fs_staging, recursive=True)
        adds = []
        for info in fs.get_file_info(selector):
            rel = info.path[len(fs_staging) + 1 :]
            if info.type != pafs.FileType.File or not rel.endswith(".parquet"):
                continue  # _SUCCESS, .crc files, folders
            partition_dir, _, filename = rel.rpartition("/")
            target_rel = f"{partition_dir}/{filename}" if partition_dir else filename
            target = f"{fs_table}/{target_rel}"
            if partition_dir:
                fs.create_dir(f"{fs_table}/{partition_dir}", recursive=True)
            fs.move(info.path, target)
            published.append(target)
            metadata = pq.read_metadata(target, filesystem=fs)
            adds.append(
                AddAction(
                    path=quote(target_rel, safe="/="),
                    size=info.size,
                    partition_values=_partition_values(partition_dir),
                    modification_time=int(time.time() * 1000),
                    data_change=True,
                    stats=delta_stats_json(metadata),
                )
            )
        return adds

    def _commit(
        self, table: DeltaTable | None, adds: list[AddAction], schema: T.StructType, request: WriteRequest
    ) -> None:
        """The single point where a write becomes visible (tests inject failures here)."""
        delta_schema = DeltaSchema.from_arrow(_nullable(to_arrow_schema(schema, timezone="UTC")))
        props = CommitProperties(
            app_transactions=[Transaction(request.app_id, 0, int(time.time() * 1000))],
            custom_metadata=request.metadata,
            # an append deduplicated against one version must not be rebased onto a later one
            max_commit_retries=0 if request.if_absent is not None else None,
        )
        partition_by = request.partition_by or None
        if table is None:
            try:
                create_table_with_add_actions(
                    self.table_path(request.table),
                    delta_schema,
                    adds,
                    mode="error",
                    partition_by=partition_by,
                    name=request.table,
                    commit_properties=props,
                )
            except DeltaError as exc:
                if not self.exists(request.table):
                    raise
                raise CommitFailedError(f"the table was created by another writer: {exc}") from exc
            return
        actions: list[AddAction | RemoveAction] = list(adds)
        table.create_write_transaction(
            actions,
            mode=request.mode,
            schema=delta_schema,
            partition_by=partition_by,
            partition_filters=[(k, "=", v) for k, v in sorted(request.replace_where.items())] or None,
            commit_properties=props,
        )

    def _discard(self, fs: pafs.FileSystem, files: list[str]) -> None:
        """Best effort: remove files of a write that will not be committed (VACUUM catches the rest)."""
        for path in files:
            with contextlib.suppress(OSError):
                fs.delete_file(path)

    def _check_compatible(
        self, name: str, table: DeltaTable, schema: T.StructType, request: WriteRequest
    ) -> None:
        existing = from_arrow_schema(pa.schema(table.schema().to_arrow()))
        check_schema(name, with_added_columns(existing, schema, request), schema)
        current = list(table.metadata().partition_columns)
        if current != request.partition_by:
            raise SchemaMismatchError(
                name, [f"partitioned by {current}, write asks for {request.partition_by}"]
            )


def read_delta_path(spark: SparkSession, path: str, *, version: int | None = None) -> DataFrame:
    """Any Delta table by path (an input source, say), read through its snapshot's file list."""
    try:
        table = DeltaTable(path, version=version)
    except DeltaTableNotFound:
        raise TableNotFoundError(path.rstrip("/").rsplit("/", 1)[-1], path) from None
    return _read_snapshot(spark, table, path, None)


def _read_snapshot(
    spark: SparkSession, table: DeltaTable, path: str, schema: T.StructType | None
) -> DataFrame:
    schema = schema or from_arrow_schema(pa.schema(table.schema().to_arrow()))
    files = table.file_uris()
    if not files:
        return spark.createDataFrame([], schema)
    reader = spark.read.schema(schema)
    if table.metadata().partition_columns:
        # partition values live in the folder names: discover them relative to the table root
        reader = reader.option("basePath", path)
    return reader.parquet(*files).select(*schema.names)


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(path)


def _partition_values(partition_dir: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in filter(None, partition_dir.split("/")):
        key, _, raw = part.partition("=")
        values[unquote(key)] = None if raw == _NULL_PARTITION else unquote(raw)
    return values


def _check_inside(name: str, adds: list[AddAction], replace_where: dict[str, str]) -> None:
    for add in adds:
        for column, value in replace_where.items():
            found = add.partition_values.get(column)
            if found != value:
                raise ValueError(
                    f"table '{name}': replace_where {column}={value} but the data holds {column}={found}"
                )


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _stats_rows(add: AddAction) -> int:
    return int(json.loads(add.stats)["numRecords"])
