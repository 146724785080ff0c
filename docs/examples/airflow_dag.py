"""Example Airflow DAG: the daily genre-spark refresh (not part of the package; copy and adapt).

Two ways, pick one:
- ``spark_submit``: SparkSubmitOperator (apache-airflow-providers-apache-spark) runs jobs/run.py with the
  wheel on YARN / Kubernetes / standalone;
- ``databricks``: DatabricksRunNowOperator (apache-airflow-providers-databricks) triggers the bundle's job
  (databricks.yml) with as_of set to the DAG run's logical date.

Retries are safe: the run id is derived from as_of and the config, so a retried run commits nothing twice.
Exit codes of the genre-spark process (stderr carries the one-line reason): 0 done; 2 bad config;
3 bad input file; 4 schema/table problem; 5 concurrent write (retry); 6 rows lost between input and
output; 1 anything else.
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.databricks.operators.databricks import DatabricksRunNowOperator

WHEEL = "/opt/genre-spark/dist/genre_spark-0.1.0-py3-none-any.whl"
CONF = "/opt/genre-spark/conf/cluster.yaml"

with DAG(
    dag_id="genre_spark_refresh",
    schedule="30 4 * * *",  # daily, 04:30 UTC
    start_date=dt.datetime(2024, 1, 1),
    catchup=True,  # a missed day is run for its own as_of (one run per date, like genre-spark backfill)
    max_active_runs=1,  # runs of one warehouse go one after the other
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["genre-spark"],
) as dag:
    spark_submit = SparkSubmitOperator(
        task_id="spark_submit",
        conn_id="spark_default",  # master URL (yarn, k8s://..., spark://...) lives in the connection
        application="/opt/genre-spark/jobs/run.py",
        py_files=WHEEL,
        application_args=["--conf", CONF, "--as-of", "{{ ds }}", "--context-hour", "9"],
        conf={"spark.executor.memory": "8g"},
        name="genre-spark-{{ ds }}",
    )

    databricks = DatabricksRunNowOperator(
        task_id="databricks",
        databricks_conn_id="databricks_default",
        job_name="genre-spark refresh",  # the bundle's job (prefixed with [dev <user>] in the dev target)
        job_parameters={"as_of": "{{ ds }}", "run_id": ""},
    )
