"""Builds the Spark session for an entry point (the CLI, jobs/, notebooks, tests).

Library code never calls this: stages receive the session as their first argument.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from genre_spark.config import SparkSettings

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"

# Settings the library relies on; user conf (spark.conf in YAML) may add but not change them.
REQUIRED_CONF = {
    # Event times have no zone in the sources; one fixed session zone makes parsing reproducible.
    "spark.sql.session.timeZone": "UTC",
    # delta-rs cannot read Spark's default INT96 timestamps back.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def session_conf(settings: SparkSettings) -> dict[str, str]:
    """The configuration's spark.conf with the library's REQUIRED_CONF over it: what every session needs,
    whether genre-spark builds it or a notebook's cluster did."""
    return {**settings.conf, **REQUIRED_CONF}


def build_spark_session(settings: SparkSettings, *, delta_extension: bool = False) -> SparkSession:
    # Python workers must run the interpreter that has the project's packages, not any python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    conf = {
        **session_conf(settings),
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.enabled": str(settings.ui_enabled).lower(),
    }
    if delta_extension:
        conf["spark.sql.extensions"] = DELTA_EXTENSION
        conf["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark
