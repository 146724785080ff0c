"""The whole pipeline through ``spark-submit --py-files`` on a real standalone cluster: a master and one
worker from the pyspark wheel, a separate executor JVM with its own Python workers, on a slice of the real
sample."""

from __future__ import annotations

import datetime as dt
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from genre_spark.config import Settings
from tests.cluster.standalone import Cluster, java_available, standalone_cluster, submit
from tests.conftest import PROJECT_ROOT, customer_slice
from tests.tiny_models import save_bi_encoder

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(not java_available(), reason="Java is not installed (no java on PATH, no JAVA_HOME)"),
]

AS_OF = dt.date(2011, 12, 9)
EVERY_NTH_CUSTOMER = 30  # 146 customers, ~16k rows, ~2,500 items of online_retail_2010_2011 (suite budget)
K = 10
SCORING_UDF = "row_dots"  # the bi-encoder's Arrow UDF (profile . title vector); only scoring calls it
SUBMIT = ["--driver-memory", "2g", "--executor-memory", "2g", "--total-executor-cores", "2"]
SUBMIT += ["--conf", "spark.ui.enabled=false"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standalone_cluster(tmp_path_factory.mktemp("cluster"), cores=2, memory="3g") as running:
        yield running


def package_zip(target: Path) -> Path:
    """genre_spark/ as a --py-files zip: its modules and package data (default.yaml and strategies.yaml,
    symlinks into conf/, go in as files; config reads them with importlib.resources, which reads zips)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((PROJECT_ROOT / "genre_spark").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.writestr(str(path.relative_to(PROJECT_ROOT)), path.read_bytes())
    return target


def job_conf(target: Path, warehouse: Path, events_csv: Path) -> Path:
    """Merged over the packaged defaults; no spark.master: spark-submit decides."""
    # a tiny encoder (MiniLM's code path and tokenizer, random weights) for enrich and the bi-encoder: the
    # executors load it from its folder as they would MiniLM's, in a fraction of the time
    encoder = str(save_bi_encoder(target.parent / "encoder"))
    conf = {
        # no whole-stage codegen: ~16k rows (see NO_CODEGEN in tests/conftest.py)
        "spark": {"master": None, "shuffle_partitions": 4, "conf": {"spark.sql.codegen.wholeStage": "false"}},
        "storage": {"warehouse": str(warehouse), "backend": "embedded"},
        "ingest": {
            "sources": {
                "online_retail_ii_2009_2010": {"enabled": False},
                "online_retail_2010_2011": {"path": str(events_csv)},
            }
        },
        "scoring": {"bi_encoder": {"enabled": True, "model": encoder}},
        # the suite's budget (see tests/conftest.py): fewer categories, k values and ALS iterations
        "candidates": {"limits": {"similar_users": 0}, "als": {"max_iter": 5, "rank": 16}},
        "enrich": {"n_categories": 8, "encoder": {"model": encoder}},
        "segments": {"k_min": 3, "k_max": 3},  # one KMeans fit: each Spark job pays the cluster's latency
        # the learned ranker trains across the executors (barrier tasks): one cut-off, fewer trees, no LM
        # feature (the cut-off's stages then skip the scorer: the date's scoring shows the executors run it)
        "discriminator": {"cutoffs": 1, "n_estimators": 20, "without": ["segment", "lm"]},
        "ranking": {"k": K},
    }
    target.write_text(yaml.safe_dump(conf))
    return target


def run_submit(cluster: Cluster, args: list[str], cwd: Path) -> str:
    done = submit(cluster, [*SUBMIT, *args], cwd=cwd, timeout=900)
    if done.returncode != 0:
        pytest.fail(
            f"spark-submit exited with {done.returncode}\n--- stdout ---\n{done.stdout[-5000:]}\n"
            f"--- stderr ---\n{done.stderr[-8000:]}\n{cluster.diagnostics()}"
        )
    return done.stdout


def python_task_executors(events: list[dict[str, Any]], udf: str) -> list[str]:
    """Executor ids of the tasks that executed Python code (task metric 'time to execute Python code' > 0)
    in the jobs of the SQL queries whose plan calls ``udf``."""
    queries = {
        e["executionId"]
        for e in events
        if e["Event"].endswith(("SQLExecutionStart", "SQLAdaptiveExecutionUpdate"))
        and udf in e["physicalPlanDescription"]
    }
    stages = {
        stage
        for e in events
        if e["Event"] == "SparkListenerJobStart"
        and int(e["Properties"].get("spark.sql.execution.id", -1)) in queries
        for stage in e["Stage IDs"]
    }
    return [
        e["Task Info"]["Executor ID"]
        for e in events
        if e["Event"] == "SparkListenerTaskEnd"
        and e["Stage ID"] in stages
        and any(
            a["Name"] == "time to execute Python code" and int(a["Update"]) > 0
            for a in e["Task Info"]["Accumulables"]
        )
    ]


def test_pipeline_on_standalone_cluster(cluster: Cluster, settings: Settings, tmp_path: Path) -> None:
    py_files = ["--py-files", str(package_zip(tmp_path / "genre_spark.zip"))]

    # Every stage, scorer bi_encoder on, as on any cluster; the event log records where tasks ran. The
    # submitted script (tests/cluster/probe.py) first asks the driver and the executors where genre_spark
    # comes from, then runs jobs/run.py in the same application.
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    event_log = [f"spark.eventLog.dir=file://{events_dir}", "spark.eventLog.enabled=true"]
    event_log += ["spark.eventLog.compress=false", "spark.eventLog.rolling.enabled=false"]
    warehouse = tmp_path / "warehouse"
    events = customer_slice(
        "online_retail_2010_2011", settings, tmp_path / "every_nth_customer.csv.gz", EVERY_NTH_CUSTOMER
    )
    conf = job_conf(tmp_path / "cluster.yaml", warehouse, events)
    probe = str(Path(__file__).with_name("probe.py"))
    job = [
        *(a for c in event_log for a in ("--conf", c)),
        *py_files,
        probe,
        str(PROJECT_ROOT / "jobs" / "run.py"),
    ]
    stdout = run_submit(cluster, [*job, "--conf", str(conf), "--as-of", AS_OF.isoformat()], tmp_path)

    # 1. The driver and each executor Python worker import genre_spark from the shipped zip (not the
    #    editable install) and run this interpreter.
    (line,) = [x for x in stdout.splitlines() if x.startswith("probe: ")]
    origins = json.loads(line.removeprefix("probe: "))
    assert origins["executors"], "no executor answered"
    for module, python in [origins["driver"], *origins["executors"]]:
        assert module.endswith("/genre_spark.zip/genre_spark/__init__.py") and python == sys.executable

    # 2. The job ran every stage.
    print(stdout)  # shown when an assertion below fails
    assert "stage ranking: done" in stdout

    # 3. The lists: for the as-of date, at most K per user, known items, each with a reason.
    recs = DeltaTable(str(warehouse / "recommendations")).to_pandas()
    items = DeltaTable(str(warehouse / "items")).to_pandas()
    recs = recs[pd.to_datetime(recs["as_of"]).dt.date == AS_OF]
    assert recs["user_id"].nunique() > 100
    assert recs.groupby("user_id").size().max() <= K
    assert set(recs["item_id"]) <= set(items["item_id"])
    assert recs["explanation"].str.len().gt(0).all()

    # 4. The bi-encoder scored, in Python workers of the worker's executor.
    scores = DeltaTable(str(warehouse / "scores")).to_pandas()
    assert (scores["scorer"] == "bi_encoder").sum() > 0
    (log,) = events_dir.iterdir()  # one JSON-lines file named after the application id
    events = [json.loads(line) for line in log.read_text().splitlines()]
    executors = {e["Executor ID"] for e in events if e["Event"] == "SparkListenerExecutorAdded"}
    ran_on = python_task_executors(events, SCORING_UDF)
    assert ran_on and set(ran_on) <= executors and "driver" not in executors, (ran_on, executors)
    finished = [app for app in cluster.state()["completedapps"] if app["id"] == log.name]
    assert finished and finished[0]["state"] == "FINISHED", finished
