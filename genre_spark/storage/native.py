"""Native Delta back-end: Spark's own Delta writer, for clusters with io.delta:delta-spark (and Databricks).

Everything but the Spark calls is shared with the embedded back-end (``base.TableStore``): the
contract check, the app-transaction id (``txnAppId``/``txnVersion``, which Delta itself enforces:
a rerun is skipped without writing) and the replaced partition (``replaceWhere``). A table is a path
or URI (``save``/``load``) or, from ``storage.catalog``/``database``/``tables``, a catalog table
name (``saveAsTable``/``table``), see ``storage/locations.py``.
"""

from __future__ import annotations

import json
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame

from genre_spark.errors import TableNotFoundError, WriteConflictError
from genre_spark.schemas import contract
from genre_spark.storage.base import (
    RUN_ID_KEY,
    TableStore,
    WriteRequest,
    WriteResult,
    check_unchanged,
    commit_metadata,
    replace_where_predicate,
)

# what Delta's optimistic concurrency raises when another commit won (exception classes, error classes)
_CONCURRENT_COMMIT = (
    "io.delta.exceptions.Concurrent",
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)


class NativeDeltaStore(TableStore):
    backend = "delta"

    def exists(self, name: str) -> bool:
        from delta.tables import DeltaTable

        where = self.location(name)
        if where.name is not None:
            return bool(self.spark.catalog.tableExists(where.name))
        return bool(DeltaTable.isDeltaTable(self.spark, str(where)))

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        latest = self._history_df(name, 1).first()
        return None if latest is None else int(latest["version"])

    def history(self, name: str) -> list[dict[str, Any]]:
        if not self.exists(name):
            raise TableNotFoundError(name, self.table_path(name))
        # one row per table version (commit infos, not data)
        rows = self._history_df(name, None).collect()
        return [with_user_metadata(row.asDict(recursive=True)) for row in rows]

    def _history_df(self, name: str, limit: int | None) -> DataFrame:
        return self._delta_table(name).history(limit)

    def _delta_table(self, name: str) -> Any:
        from delta.tables import DeltaTable

        where = self.location(name)
        if where.name is not None:
            return DeltaTable.forName(self.spark, where.name)
        return DeltaTable.forPath(self.spark, str(where))

    def read_table(self, name: str, *, version: int | None = None) -> DataFrame:
        if not self.exists(name):
            raise TableNotFoundError(name, self.table_path(name))
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        where = self.location(name)
        df = reader.table(where.name) if where.name is not None else reader.load(str(where))
        schema = contract(name)
        return df if schema is None else df.select(*schema.names)

    def delete_where(self, name: str, predicate: str, *, run_id: str) -> WriteResult:

        if not self.exists(name):
            raise TableNotFoundError(name, self.table_path(name))
        matching = self.read_table(name).filter(predicate).count()
        if matching == 0:
            return WriteResult(name, self.version(name), skipped=True)
        table = self._delta_table(name)
        metadata = json.dumps(commit_metadata(name, run_id, {}, self.commit_tags))
        self.spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", metadata)
        try:
            table.delete(predicate)
        finally:
            self.spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        return WriteResult(name, self.version(name), skipped=False, rows=matching)

    def _write(self, df: DataFrame, request: WriteRequest) -> WriteResult:
        name = request.table
        before = self.version(name)
        check_unchanged(name, before, request)
        try:
            if request.if_absent is not None and before is not None:
                self._merge_absent(df, request)
            else:
                self._save(df, request)
        except (PySparkException, Py4JJavaError) as exc:  # Delta's errors, as Spark surfaces them
            if any(marker in str(exc) for marker in _CONCURRENT_COMMIT):
                raise WriteConflictError(
                    f"table '{name}': concurrent commit, nothing written: {exc}"
                ) from exc
            raise
        after = self.version(name)
        return WriteResult(name, after, skipped=after == before)

    def _merge_absent(self, df: DataFrame, request: WriteRequest) -> None:
        """Delta's insert-if-absent: a MERGE that inserts the rows whose key the table lacks. Not a
        blind append, so a concurrent MERGE of the same rows conflicts (ConcurrentAppendException)."""
        assert request.if_absent is not None
        key = request.if_absent.key
        table = self._delta_table(request.table)
        confs = {
            "spark.databricks.delta.write.txnAppId": request.app_id,
            "spark.databricks.delta.write.txnVersion": "0",
            "spark.databricks.delta.commitInfo.userMetadata": json.dumps(request.metadata),
        }
        for k, v in confs.items():
            self.spark.conf.set(k, v)
        try:
            (
                table.alias("t")
                .merge(df.alias("s"), f"t.`{key}` = s.`{key}`")
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            for k in confs:
                self.spark.conf.unset(k)

    def _save(self, df: DataFrame, request: WriteRequest) -> None:
        name = request.table
        writer = (
            df.write.format("delta")
            .mode(request.mode)
            .option("txnAppId", request.app_id)
            .option("txnVersion", 0)
            .option("userMetadata", json.dumps(request.metadata))
        )
        if request.partition_by:
            writer = writer.partitionBy(*request.partition_by)
        if request.replace_where:
            writer = writer.option("replaceWhere", replace_where_predicate(request.replace_where, df.schema))
        elif request.mode == "overwrite":
            writer = writer.option("mergeSchema", "true")  # a column the contract gained (with_added_columns)
        where = self.location(name)
        if where.name is not None:
            writer.saveAsTable(where.name)
        else:
            writer.save(str(where))


def with_user_metadata(commit: dict[str, Any]) -> dict[str, Any]:
    """A commit info with the store's metadata (a JSON object in ``userMetadata``; before, the text
    ``genre_spark.run_id=<run id>``) as top-level keys."""
    text = commit.get("userMetadata") or ""
    if text.startswith("{"):
        return {**commit, **json.loads(text)}
    if text.startswith(f"{RUN_ID_KEY}="):
        return {**commit, RUN_ID_KEY: text.removeprefix(f"{RUN_ID_KEY}=")}
    return commit
