"""Submitted with the job's --py-files: prints, as JSON, where the driver and the executors' Python workers
import genre_spark from and which interpreter they run."""

from __future__ import annotations

import json
import sys

from pyspark.sql import SparkSession


def origin(_: object) -> tuple[str, str]:
    import genre_spark

    return str(genre_spark.__file__), sys.executable


if __name__ == "__main__":
    spark = SparkSession.builder.appName("genre-spark-probe").getOrCreate()
    executors = spark.sparkContext.parallelize(range(4), 2).map(origin).distinct().collect()
    print(json.dumps({"driver": origin(None), "executors": executors}))
    spark.stop()
