"""The storage interface shared by both back-ends, and the checks every write goes through."""

from __future__ import annotations

import datetime as dt
import posixpath
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from genre_spark.errors import SchemaMismatchError, WriteConflictError
from genre_spark.schemas import AS_OF, USER_ID, contract
from genre_spark.storage.locations import Locator, TableLocation, normalize_path

WriteMode = Literal["append", "overwrite"]
PartitionValue = str | int | dt.date


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int | None  # table version after the write (the existing one when skipped)
    skipped: bool  # True when this run id had already been committed: nothing was written
    files: int = 0
    rows: int | None = None


@dataclass(frozen=True)
class AppendIfAbsent:
    """An append of rows deduplicated against the table as of ``read_version`` (None: no table yet).

    It commits only if no other commit touched the table since that version, so two overlapping
    appends of the same rows leave one copy, whichever wins; the loser raises WriteConflictError.
    The embedded back-end checks the version at commit (no commit retry); the native one runs a
    Delta MERGE that inserts the rows whose ``key`` is absent (two such MERGEs conflict in Delta).
    """

    key: str
    read_version: int | None


@dataclass(frozen=True)
class WriteRequest:
    """One write, after the shared checks: what a back-end needs to commit it."""

    table: str
    mode: WriteMode
    run_id: str
    app_id: str  # Delta app-transaction id: a second write with the same id is skipped
    partition_by: list[str]
    replace_where: dict[str, str]  # partition column -> value as spelled in paths and predicates
    metadata: dict[str, str]  # the commit's (Delta commitInfo): run id, table, partition, the store's tags
    if_absent: AppendIfAbsent | None = None


class TableStore(ABC):
    """Delta tables under one warehouse root. Use :func:`genre_spark.storage.open_store` to get one."""

    backend: str

    def __init__(self, spark: SparkSession, warehouse: str, locator: Locator | None = None) -> None:
        self.spark = spark
        # Spark and delta-rs take local paths as absolute paths, remote ones as URIs
        self.locator = locator or Locator(
            normalize_path(warehouse, backend=self.backend, key="storage.warehouse"), self.backend, None, {}
        )
        self.warehouse = self.locator.warehouse
        self._filesystems: dict[str, tuple[pafs.FileSystem, str]] = {}
        # (writing stage, result) of every write through this store, in order: progress and run reports
        self.write_log: list[tuple[str, WriteResult]] = []
        self.progress: Callable[[str], None] | None = None  # told about each write (pipeline.run_stages)
        # added to every commit's metadata (pipeline.run_stages: the stage settings' fingerprint)
        self.commit_tags: dict[str, str] = {}

    def location(self, name: str) -> TableLocation:
        """Where table ``name`` lives: a path/URI, or (native back-end) a catalog table name."""
        return self.locator.locate(name)

    def table_path(self, name: str) -> str:
        """The table's path or URI; for a catalog table, its name (for messages)."""
        return str(self.location(name))

    def filesystem(self, location: str) -> tuple[pafs.FileSystem, str]:
        """(pyarrow filesystem, path inside it) of a path or URI; opened on first use (remote ones
        resolve credentials and regions), cached per location."""
        if location not in self._filesystems:
            fs, root = pafs.FileSystem.from_uri(_as_uri(location))
            self._filesystems[location] = (fs, root.rstrip("/"))
        return self._filesystems[location]

    @property
    def _fs(self) -> pafs.FileSystem:
        return self.filesystem(self.warehouse)[0]

    @property
    def _root(self) -> str:
        return self.filesystem(self.warehouse)[1]

    # Saved models (MLlib PipelineModels) live beside the tables: <warehouse>/_models/<kind>/<run id>,
    # with <kind>/LATEST naming the newest. Reports (PNG) go to <warehouse>/_reports/.

    def model_path(self, kind: str, run_id: str) -> str:
        return f"{self.warehouse}/_models/{kind}/{run_id}"

    def latest_model(self, kind: str) -> str | None:
        """Run id of the newest saved model of ``kind``, None when there is none."""
        try:
            with self._fs.open_input_stream(f"{self._root}/_models/{kind}/LATEST") as f:
                return str(f.read().decode().strip()) or None
        except FileNotFoundError:
            return None

    def set_latest_model(self, kind: str, run_id: str) -> None:
        self._fs.create_dir(f"{self._root}/_models/{kind}", recursive=True)
        with self._fs.open_output_stream(f"{self._root}/_models/{kind}/LATEST") as f:
            f.write(run_id.encode())

    def write_model_note(self, kind: str, run_id: str, text: str) -> None:
        """A text note beside a saved model (what it was trained on): ``_models/<kind>/<run id>.json``."""
        self._fs.create_dir(f"{self._root}/_models/{kind}", recursive=True)
        with self._fs.open_output_stream(f"{self._root}/_models/{kind}/{run_id}.json") as f:
            f.write(text.encode())

    def read_model_note(self, kind: str, run_id: str) -> str | None:
        try:
            with self._fs.open_input_stream(f"{self._root}/_models/{kind}/{run_id}.json") as f:
                return str(f.read().decode())
        except FileNotFoundError:
            return None

    def write_report(self, name: str, data: bytes) -> str:
        """Write a report file (HTML, Markdown, PNG) to ``<warehouse>/_reports/<name>`` through the
        warehouse's filesystem, local or remote (s3://, abfss://, file://, ...); its path or URI."""
        path = f"{self._root}/_reports/{name}"
        self._fs.create_dir(posixpath.dirname(path), recursive=True)
        with self._fs.open_output_stream(path) as f:
            f.write(data)
        return f"{self.warehouse}/_reports/{name}"

    def read_report(self, name: str) -> bytes | None:
        """A report file written by :meth:`write_report`, None when there is none."""
        try:
            with self._fs.open_input_stream(f"{self._root}/_reports/{name}") as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None

    def write_table(
        self,
        df: DataFrame,
        name: str,
        *,
        mode: WriteMode,
        run_id: str,
        stage: str = "",
        partition_by: Sequence[str] = (),
        replace_where: Mapping[str, PartitionValue] | None = None,
        if_absent: AppendIfAbsent | None = None,
    ) -> WriteResult:
        """Write ``df`` to table ``name`` in one atomic, idempotent commit.

        ``run_id`` and ``stage`` are recorded as the Delta app-transaction id: the same stage writing
        the same run id again (to the same partition, when ``replace_where`` is given) is detected
        and skipped. Two stages writing one table in one run (ingest and enrich both write
        ``items``) pass their own ``stage`` so both land.
        ``replace_where`` maps partition columns to values and turns an overwrite into a
        replacement of that partition only; every written row must fall inside it.
        ``if_absent`` makes an append serializable against other writers (see :class:`AppendIfAbsent`).
        """
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
        if replace_where and mode != "overwrite":
            raise ValueError("replace_where requires mode='overwrite'")
        outside = sorted(set(replace_where or ()) - set(partition_by))
        if outside:
            raise ValueError(
                f"replace_where columns {outside} must be partition columns {list(partition_by)}"
            )
        if if_absent is not None and mode != "append":
            raise ValueError("if_absent requires mode='append'")
        df = conform_to_contract(df, name)
        missing = [c for c in partition_by if c not in df.columns]
        if missing:
            raise SchemaMismatchError(name, [f"partition column(s) {missing} not in the DataFrame"])
        replaced = {k: partition_string(v) for k, v in (replace_where or {}).items()}
        request = WriteRequest(
            table=name,
            mode=mode,
            run_id=run_id,
            app_id=transaction_app_id(run_id, stage, replace_where),
            partition_by=list(partition_by),
            replace_where=replaced,
            metadata=commit_metadata(name, run_id, replaced, self.commit_tags),
            if_absent=if_absent,
        )
        started = time.perf_counter()
        result = self._write(df, request)
        self.write_log.append((stage, result))
        if self.progress is not None:
            done = "unchanged (run already committed)" if result.skipped else f"{result.rows or 0:,} rows"
            self.progress(
                f"  {stage or 'write'}: table {name} {done} in {time.perf_counter() - started:.1f} s"
            )
        return result

    def replace_date(
        self, df: DataFrame, name: str, *, as_of: dt.date, run_id: str, stage: str, rebalance: bool = False
    ) -> WriteResult:
        """Replace the ``as_of`` partition of a per-date table (features, segments, candidates, ...).

        ``rebalance`` shuffles the rows by user first: adaptive query execution then writes files of
        about ``spark.sql.adaptive.advisoryPartitionSizeInBytes`` of shuffled rows, each user's rows in
        one file, instead of one file per partition of the plan that computed them. For a table whose
        plan leaves many small files (a million users' lists: 100 files of 1.8 MB, 3 of 60 MB
        rebalanced, the write 12.3 s -> 18.3 s, benchmarks/results/compaction.md); a large table
        whose files are already sized pays the shuffle for nothing."""
        if rebalance:
            df = df.hint("rebalance", USER_ID)
        return self.write_table(
            df,
            name,
            mode="overwrite",
            run_id=run_id,
            stage=stage,
            partition_by=[AS_OF],
            replace_where={AS_OF: as_of},
        )

    @abstractmethod
    def _write(self, df: DataFrame, request: WriteRequest) -> WriteResult: ...

    @abstractmethod
    def delete_where(self, name: str, predicate: str, *, run_id: str) -> WriteResult:
        """Delete the rows matching the SQL ``predicate`` in one Delta commit (removing whole files
        when it only names partition columns). Commits nothing when no row matches."""

    @abstractmethod
    def read_table(self, name: str, *, version: int | None = None) -> DataFrame:
        """The committed snapshot of ``name`` (latest, or ``version``); never uncommitted files."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def version(self, name: str) -> int | None:
        """Latest committed version, None when the table does not exist."""

    @abstractmethod
    def history(self, name: str) -> list[dict[str, Any]]:
        """Commit infos, newest first, with this store's commit metadata as top-level keys
        (``genre_spark.run_id``, ``genre_spark.table``, ``genre_spark.partition``, the commit tags)."""

    def partition_commit(self, name: str, as_of: dt.date) -> dict[str, Any] | None:
        """The commit info of the newest write that replaced ``name``'s ``as_of`` partition (None when
        none did: the partition was never replaced, or by a writer that did not record it)."""
        if not self.exists(name):
            return None
        wanted = partition_label({AS_OF: partition_string(as_of)})
        return next((c for c in self.history(name) if c.get(PARTITION_KEY) == wanted), None)


def _as_uri(location: str) -> str:
    if location.startswith("dbfs:/Volumes/"):
        return "file://" + location.removeprefix("dbfs:")  # the volume's FUSE mount on Databricks
    return location if "://" in location else "file://" + posixpath.abspath(location)


def transaction_app_id(
    run_id: str, stage: str = "", replace_where: Mapping[str, PartitionValue] | None = None
) -> str:
    """Delta app-transaction id of a write: run id, writing stage, and the partition it replaces if any."""
    if not run_id or not run_id.strip():
        raise ValueError("run_id must be a non-empty string")
    app_id = f"genre-spark:{run_id}"
    if stage:
        app_id += f":{stage}"
    if replace_where:
        app_id += ":" + partition_label({k: partition_string(v) for k, v in replace_where.items()})
    return app_id


RUN_ID_KEY = "genre_spark.run_id"
PARTITION_KEY = "genre_spark.partition"


def partition_label(replace_where: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(replace_where.items()))


def commit_metadata(
    table: str, run_id: str, replace_where: Mapping[str, str], tags: Mapping[str, str]
) -> dict[str, str]:
    """What a commit records besides its data: the run id, the table, the partition it replaced."""
    metadata = {RUN_ID_KEY: run_id, "genre_spark.table": table, **tags}
    if replace_where:
        metadata[PARTITION_KEY] = partition_label(replace_where)
    return metadata


def with_added_columns(existing: T.StructType, written: T.StructType, request: WriteRequest) -> T.StructType:
    """The schema a write may have: the table's, plus the written columns it lacks when the write replaces
    the whole table (a column the contract gained, e.g. ``items.first_seen_ts``: the commit carries the
    new schema). Appends and partition replacements must match the table exactly."""
    if request.mode != "overwrite" or request.replace_where:
        return existing
    return T.StructType([*existing.fields, *[f for f in written.fields if f.name not in existing.names]])


def check_unchanged(name: str, version: int | None, request: WriteRequest) -> None:
    """An append-if-absent fails before writing anything when the table moved since it was read."""
    if request.if_absent is not None and version != request.if_absent.read_version:
        read = request.if_absent.read_version
        raise WriteConflictError(
            f"table '{name}': another writer committed since this run read it "
            f"(version {'none' if read is None else read}, now {version}), nothing written"
        )


def partition_string(value: PartitionValue) -> str:
    """How a partition value is spelled in paths, Delta partitionValues and predicates."""
    if isinstance(value, dt.datetime):
        raise TypeError("timestamp partition values are not supported; partition by a date")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def replace_where_predicate(replace_where: Mapping[str, str], schema: T.StructType) -> str:
    """SQL predicate for Delta's ``replaceWhere`` option (native back-end)."""
    clauses = []
    for column, value in sorted(replace_where.items()):
        dtype = schema[column].dataType
        literal = value if isinstance(dtype, T.IntegralType) else "'" + value.replace("'", "''") + "'"
        if isinstance(dtype, T.DateType):
            literal = f"DATE {literal}"
        clauses.append(f"`{column}` = {literal}")
    return " AND ".join(clauses)


def conform_to_contract(df: DataFrame, table: str) -> DataFrame:
    """Check ``df`` against the table's contract and return it in contract column order.

    Tables without a contract pass through unchanged. Nullability is not compared: every
    contract field is nullable (delta-rs would not enforce NOT NULL anyway).
    """
    expected = contract(table)
    if expected is None:
        return df
    return df.select(*check_schema(table, expected, df.schema))


def check_schema(table: str, expected: T.StructType, found: T.StructType) -> list[str]:
    """Column names of ``expected`` after checking ``found`` has exactly those columns and types."""
    found_types = {f.name: f.dataType for f in found.fields}
    problems = []
    for field in expected.fields:
        if field.name not in found_types:
            problems.append(f"missing column '{field.name}' ({field.dataType.simpleString()})")
        elif _strip_nullability(found_types[field.name]) != _strip_nullability(field.dataType):
            problems.append(
                f"column '{field.name}': expected {field.dataType.simpleString()}, "
                f"found {found_types[field.name].simpleString()}"
            )
    extra = [name for name in found_types if name not in expected.names]
    if extra:
        problems.append(f"unexpected column(s) {extra}")
    if problems:
        raise SchemaMismatchError(table, problems)
    return list(expected.names)


def _strip_nullability(dtype: T.DataType) -> T.DataType:
    if isinstance(dtype, T.StructType):
        return T.StructType([T.StructField(f.name, _strip_nullability(f.dataType)) for f in dtype.fields])
    if isinstance(dtype, T.ArrayType):
        return T.ArrayType(_strip_nullability(dtype.elementType))
    if isinstance(dtype, T.MapType):
        return T.MapType(_strip_nullability(dtype.keyType), _strip_nullability(dtype.valueType))
    return dtype
