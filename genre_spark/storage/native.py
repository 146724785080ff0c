"""Native Delta back-end: Spark's own Delta writer, for clusters with io.delta:delta-spark (and Databricks).

Everything but the Spark calls is shared with the embedded back-end (``base.TableStore``): the
contract check, the app-transaction id (``txnAppId``/``txnVersion``, which Delta itself enforces:
a rerun is skipped without writing) and the replaced partition (``replaceWhere``). A table is a path
or URI (``save``/``load``) or, from ``storage.catalog``/``database``/``tables``, a catalog table
name (``saveAsTable``/``table``), see ``storage/locations.py``.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from genre_spark.errors import TableNotFoundError
from genre_spark.schemas import contract
from genre_spark.storage.base import TableStore, WriteRequest, WriteResult, replace_where_predicate


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
        return [row.asDict(recursive=True) for row in self._history_df(name, None).collect()]

    def _history_df(self, name: str, limit: int | None) -> DataFrame:
        from delta.tables import DeltaTable

        where = self.location(name)
        if where.name is not None:
            return DeltaTable.forName(self.spark, where.name).history(limit)
        return DeltaTable.forPath(self.spark, str(where)).history(limit)

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
        from delta.tables import DeltaTable

        if not self.exists(name):
            raise TableNotFoundError(name, self.table_path(name))
        matching = self.read_table(name).filter(predicate).count()
        if matching == 0:
            return WriteResult(name, self.version(name), skipped=True)
        where = self.location(name)
        table = (
            DeltaTable.forName(self.spark, where.name)
            if where.name is not None
            else DeltaTable.forPath(self.spark, str(where))
        )
        self.spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", f"genre_spark.run_id={run_id}")
        try:
            table.delete(predicate)
        finally:
            self.spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        return WriteResult(name, self.version(name), skipped=False, rows=matching)

    def _write(self, df: DataFrame, request: WriteRequest) -> WriteResult:
        name = request.table
        before = self.version(name)
        writer = (
            df.write.format("delta")
            .mode(request.mode)
            .option("txnAppId", request.app_id)
            .option("txnVersion", 0)
            .option("userMetadata", f"genre_spark.run_id={request.run_id}")
        )
        if request.partition_by:
            writer = writer.partitionBy(*request.partition_by)
        if request.replace_where:
            writer = writer.option("replaceWhere", replace_where_predicate(request.replace_where, df.schema))
        where = self.location(name)
        if where.name is not None:
            writer.saveAsTable(where.name)
        else:
            writer.save(str(where))
        after = self.version(name)
        return WriteResult(name, after, skipped=after == before)
