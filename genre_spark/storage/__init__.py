"""Delta tables under one warehouse root, behind one interface with two back-ends.

``open_store`` picks the back-end once per run; stages only see :class:`TableStore`.
"""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

from genre_spark.config import StorageSettings
from genre_spark.errors import ConfigError
from genre_spark.session import DELTA_EXTENSION
from genre_spark.storage.base import (
    RUN_ID_KEY,
    AppendIfAbsent,
    TableStore,
    WriteMode,
    WriteResult,
    conform_to_contract,
)
from genre_spark.storage.embedded import EmbeddedDeltaStore
from genre_spark.storage.locations import Locator, TableLocation, make_locator
from genre_spark.storage.native import NativeDeltaStore

__all__ = [
    "RUN_ID_KEY",
    "AppendIfAbsent",
    "Locator",
    "TableLocation",
    "TableStore",
    "WriteMode",
    "WriteResult",
    "conform_to_contract",
    "make_locator",
    "open_store",
    "resolve_backend",
]


def resolve_backend(spark: SparkSession, configured: str) -> str:
    """``auto`` means native Delta where Spark has it (the Delta extension, or Databricks), else embedded."""
    if configured != "auto":
        return configured
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if DELTA_EXTENSION in extensions or "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return "delta"
    return "embedded"


def open_store(spark: SparkSession, settings: StorageSettings) -> TableStore:
    backend = resolve_backend(spark, settings.backend)
    locator = make_locator(settings, backend)  # paths, URIs and catalog names checked for this back-end
    if backend == "embedded":
        return EmbeddedDeltaStore(spark, settings.warehouse, locator)
    try:
        import delta  # noqa: F401  (the Python side of io.delta:delta-spark)
    except ImportError:
        raise ConfigError(
            "storage.backend is 'delta' but the delta-spark package is not installed "
            "(pip install 'genre-spark[delta]' and put io.delta:delta-spark on the classpath), "
            "or set storage.backend: embedded"
        ) from None
    return NativeDeltaStore(spark, settings.warehouse, locator)
