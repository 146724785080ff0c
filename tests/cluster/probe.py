"""``spark-submit --py-files ... probe.py JOB [ARGS]``: prints, as JSON, where the driver and the executors'
Python workers import genre_spark from and which interpreter they run, then runs the job script (e.g.
jobs/run.py) with ARGS in the same application (one submit, one event log)."""

from __future__ import annotations

import json
import runpy
import sys

from pyspark.sql import SparkSession


def origin(_: object) -> tuple[str, str]:
    import genre_spark

    return str(genre_spark.__file__), sys.executable


if __name__ == "__main__":
    spark = SparkSession.builder.getOrCreate()
    executors = spark.sparkContext.parallelize(range(4), 2).map(origin).distinct().collect()
    print("probe: " + json.dumps({"driver": origin(None), "executors": executors}), flush=True)
    job, *args = sys.argv[1:]
    sys.argv = [job, *args]  # the job builds its session with getOrCreate: its settings apply to this one
    runpy.run_path(job, run_name="__main__")
