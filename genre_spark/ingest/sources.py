"""Reading one configured raw source (CSV, Parquet or Delta) and checking it is what config says.

A file that is not what it claims (missing, empty, not CSV/gzip, wrong header, a column of a type
that cannot hold the contract value) raises :class:`InputError` naming the source, the column and
the value. Row-level problems are left to the validation rules, which quarantine them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark import schemas as S
from genre_spark.config import SourceSettings
from genre_spark.errors import InputError
from genre_spark.storage.embedded import read_delta_path

CORRUPT = "_corrupt_record"

# Spark types a source column may have for each contract column (CSV columns are always strings).
_ACCEPTED_TYPES: Mapping[str, tuple[type[T.DataType], ...]] = {
    S.QUANTITY: (T.StringType, T.IntegralType, T.DecimalType, T.DoubleType, T.FloatType),
    S.UNIT_PRICE: (T.StringType, T.NumericType),
    S.EVENT_TS: (T.StringType, T.TimestampType, T.TimestampNTZType, T.DateType),
    S.AS_OF: (T.StringType, T.TimestampType, T.TimestampNTZType, T.DateType),
}
_DEFAULT_ACCEPTED = (T.StringType, T.IntegralType)  # ids, texts


def read_source(
    spark: SparkSession, name: str, source: SourceSettings, files: Sequence[str] | None = None
) -> DataFrame:
    """The source's rows with their original column names, plus ``_corrupt_record`` (CSV only).

    ``files`` (CSV and Parquet) reads only those files of the source (incremental folder sources).
    """
    _check_exists(name, source.path)
    paths: list[str] = list(files) if files else [source.path]
    try:
        if source.format == "csv":
            df = _read_csv(spark, name, source, paths)
        elif source.format == "parquet":
            df = spark.read.parquet(*paths).withColumn(CORRUPT, F.lit(None).cast("string"))
        else:
            df = read_delta_path(spark, source.path).withColumn(CORRUPT, F.lit(None).cast("string"))
    except (PySparkException, Py4JJavaError) as exc:
        raise InputError(
            name, f"cannot be read as {source.format}: {spark_error_reason(exc)}", path=source.path
        ) from None
    _check_columns(name, source, df.schema)
    return df


def list_files(spark: SparkSession, name: str, source: SourceSettings) -> list[str]:
    """The data files under a folder source, as Spark lists them (any filesystem Spark reads)."""
    _check_exists(name, source.path)
    try:  # the text reader has a fixed schema: listing reads no data
        return sorted(spark.read.format("text").load(source.path).inputFiles())
    except (PySparkException, Py4JJavaError) as exc:
        raise InputError(
            name, f"cannot list the folder: {spark_error_reason(exc)}", path=source.path
        ) from None


def is_folder(path: str) -> bool:
    """A folder source (ingested file by file): a local directory, or a URI ending with '/'."""
    if "://" in path and not path.startswith("file://"):
        return path.endswith("/")
    return os.path.isdir(path.removeprefix("file://"))


def _read_csv(spark: SparkSession, name: str, source: SourceSettings, paths: list[str]) -> DataFrame:
    options = {
        "header": "true",
        "sep": source.csv.delimiter,
        "encoding": source.csv.encoding,
        "quote": source.csv.quote,
        "escape": source.csv.escape,
    }
    # The header alone (no inference): reading it also proves the file decompresses and parses.
    header = spark.read.options(**options).csv(paths).columns
    if not header:
        raise InputError(name, "is empty: no header line", path=source.path)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise InputError(name, f"header repeats column(s) {duplicated}", path=source.path)
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in header] + [T.StructField(CORRUPT, T.StringType())]
    )
    return (
        spark.read.options(**options)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .schema(schema)
        .csv(paths)
    )


def _check_exists(name: str, path: str) -> None:
    if "://" in path and not path.startswith("file://"):
        return  # remote: Spark reports a missing path itself, wrapped by read_source
    local = path.removeprefix("file://")
    if not glob.glob(local):
        raise InputError(name, "no such file or directory", path=path)


def _check_columns(name: str, source: SourceSettings, schema: T.StructType) -> None:
    present = {f.name: f.dataType for f in schema.fields}
    for contract_column, source_column in source.columns.items():
        if source_column not in present:
            found = [c for c in present if c != CORRUPT]
            raise InputError(
                name,
                f"column '{source_column}' (mapped to {contract_column}) is missing; the source has {found}",
                path=source.path,
            )
        accepted = _ACCEPTED_TYPES.get(contract_column, _DEFAULT_ACCEPTED)
        dtype = present[source_column]
        if not isinstance(dtype, accepted):
            raise InputError(
                name,
                f"column '{source_column}' (mapped to {contract_column}) has type {dtype.simpleString()}, "
                f"which cannot hold a {contract_column}",
                path=source.path,
            )


def spark_error_reason(exc: Exception) -> str:
    """The root cause of a Spark/JVM error in one line ("java.io.IOException: not a gzip file")."""
    if isinstance(exc, Py4JJavaError):
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString())[:300]
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__
