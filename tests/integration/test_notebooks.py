"""Every Databricks notebook in notebooks/, executed cell by cell with the suite's Spark session.

The stage notebooks run in pipeline order into one warehouse on a slice of the real sample, then the
refresh notebook with the same (derived) run id runs only the stages no notebook ran, and a second refresh
runs nothing.
Widgets come from GENRE_SPARK_<NAME> environment variables (``notebook.EnvWidgets``).
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from genre_spark import schemas as S
from genre_spark.errors import ConfigError
from genre_spark.notebook import (
    HEADER as NOTEBOOK_HEADER,
)
from genre_spark.notebook import (
    REFRESH,
    EnvWidgets,
    declare_widgets,
    notebook_source,
    read_params,
)
from genre_spark.pipeline import STAGES
from genre_spark.storage.embedded import EmbeddedDeltaStore
from genre_spark.strategy import load_strategies, with_ranker
from tests.conftest import retail_file
from tests.tiny_models import save_bi_encoder

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = {REFRESH, "ingest", "enrich", "features", "segments", "candidates", "ranking"}
SLICE_ROWS = 20_000  # 2010-12-01 .. 2010-12-09 of the 2010-2011 export
AS_OF = "2010-12-10"


def notebook_cells(text: str) -> list[str]:
    """The code cells of a Databricks source notebook (the header line removed)."""
    if not text.startswith(NOTEBOOK_HEADER + "\n"):
        raise ValueError(f"not a Databricks source notebook: first line must be {NOTEBOOK_HEADER!r}")
    return [cell.strip("\n") for cell in text[len(NOTEBOOK_HEADER) + 1 :].split("# COMMAND ----------")]


def sample_slice(folder: Path, rows: int = SLICE_ROWS) -> Path:
    """The first ``rows`` lines (plus the header) of the real 2010-2011 export, as a plain CSV."""
    target = folder / "online_retail_slice.csv"
    with gzip.open(retail_file("online_retail_2010_2011.csv.gz"), "rt", encoding="utf-8") as src:
        target.write_text("".join(itertools.islice(src, rows + 1)), encoding="utf-8")
    return target


def slice_conf(folder: Path, csv: Path) -> Path:
    # nine days of history: too little to train the learned ranker, so the hand-set blends rank
    blends = folder / "blend_strategies.yaml"
    blends.write_text(yaml.safe_dump(with_ranker(load_strategies(), "blend").model_dump(mode="json")))
    # a tiny encoder (MiniLM's code path and tokenizer, random weights): item vectors in seconds
    encoder = str(save_bi_encoder(folder / "encoder"))
    conf = folder / "slice.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "storage": {"backend": "embedded"},
                "strategies_file": str(blends),
                "discriminator": {"enabled": False},
                # fewer categories and ALS iterations, one k (one KMeans fit): the slice is small, the test
                # should be too
                "enrich": {"n_categories": 8, "encoder": {"model": encoder}},
                "scoring": {"bi_encoder": {"model": encoder}},
                "segments": {"k_min": 3, "k_max": 3},
                "candidates": {"als": {"max_iter": 5, "rank": 16}, "limits": {"similar_users": 0}},
                "ingest": {
                    "sources": {
                        "online_retail_ii_2009_2010": {"enabled": False},
                        "online_retail_2010_2011": {"path": str(csv)},
                    }
                },
            }
        )
    )
    return conf


def execute(path: Path, spark: SparkSession) -> dict[str, Any]:
    """Run the notebook's cells in order in one namespace, as Databricks does (``spark`` predefined)."""
    namespace: dict[str, Any] = {"spark": spark, "__name__": "__main__"}
    for cell in notebook_cells(path.read_text(encoding="utf-8")):
        exec(compile(cell, f"{path.name}", "exec"), namespace)
    return namespace


def test_notebooks_are_generated() -> None:
    """Notebooks are written by tools/make_notebooks.py; a hand edit would be lost on the next run."""
    for path in NOTEBOOKS.glob("*.py"):
        assert path.read_text(encoding="utf-8") == notebook_source(
            None if path.stem == REFRESH else path.stem
        ), f"{path.name} differs from tools/make_notebooks.py's output"


def test_widget_validation_names_the_widget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    widgets = declare_widgets(None)
    assert isinstance(widgets, EnvWidgets)
    for name, value, needle in [
        ("as_of", "2010-13-01", "widget 'as_of': expected a date YYYY-MM-DD, got '2010-13-01'"),
        ("config", str(tmp_path / "nope.yaml"), "widget 'config': file(s)"),
        ("run_id", "a b", "widget 'run_id': 'a b'"),
        ("context_hour", "24", "widget 'context_hour': expected an hour 0-23, got '24'"),
        ("schema", "my-recs", "widget 'schema': 'my-recs' is not an identifier"),
        ("catalog", "main", "widget 'catalog': 'main' needs the widget 'schema' too"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(f"GENRE_SPARK_{name.upper()}", value)
            with pytest.raises(ConfigError, match="widget") as err:
                read_params(widgets)
            assert needle in str(err.value)
    monkeypatch.setenv("GENRE_SPARK_AS_OF", "2010-12-10")
    monkeypatch.setenv("GENRE_SPARK_WAREHOUSE", "/tmp/wh")
    params = read_params(widgets)
    assert params.as_of.isoformat() == "2010-12-10" and params.run_id is None and params.context_hour is None
    assert params.overrides() == ["storage.warehouse=/tmp/wh"]
    monkeypatch.setenv("GENRE_SPARK_CATALOG", "main")
    monkeypatch.setenv("GENRE_SPARK_SCHEMA", "recs")
    assert read_params(widgets).overrides()[1:] == ["storage.catalog=main", "storage.database=recs"]


def test_every_notebook_runs(spark: SparkSession, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = {p.stem: p for p in sorted(NOTEBOOKS.glob("*.py"))}
    assert set(found) >= EXPECTED, f"missing notebooks: {sorted(EXPECTED - set(found))}"
    for path in found.values():
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# Databricks notebook source\n") and len(notebook_cells(text)) >= 3

    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("GENRE_SPARK_AS_OF", AS_OF)
    monkeypatch.setenv("GENRE_SPARK_CONFIG", str(slice_conf(tmp_path, sample_slice(tmp_path))))
    monkeypatch.setenv("GENRE_SPARK_WAREHOUSE", warehouse.as_uri())  # a file:// URI, as remote ones are
    monkeypatch.setenv("GENRE_SPARK_CONTEXT_HOUR", "9")

    copartition = "spark.sql.requireAllClusterKeysForCoPartition"  # a SQL setting of conf/default.yaml
    spark.conf.set(copartition, "true")  # as a Databricks cluster's session would have it
    stage_notebooks = [found[s] for s in STAGES if s in found]
    for path in stage_notebooks:
        namespace = execute(path, spark)
        assert [r.stage for r in namespace["results"]] == [path.stem]
    assert spark.conf.get(copartition) == "false"  # the notebook set it from the configuration

    store = EmbeddedDeltaStore(spark, str(warehouse))
    recommendations = store.read_table(S.RECOMMENDATIONS)
    assert recommendations.filter(f"as_of = '{AS_OF}'").select(S.USER_ID).distinct().count() > 100
    version = store.version(S.RECOMMENDATIONS)

    # same widgets -> same derived run id: the refresh runs only the stages no notebook ran (it resumes)
    namespace = execute(found[REFRESH], spark)
    rest = [s for s in STAGES if s not in found]
    assert rest and [r.stage for r in namespace["results"]] == rest
    assert store.version(S.RECOMMENDATIONS) == version
    runs = store.read_table(S.RUNS).collect()  # one record per notebook, all of one derived run id
    assert len(runs) == len(stage_notebooks) + 1 and len({r[S.RUN_ID] for r in runs}) == 1
    run_id = runs[0][S.RUN_ID]
    reports = sorted(p.name for p in (warehouse / "_reports" / run_id).glob("report*.html"))
    expected = [f"report-{'+'.join(rest)}.html", *(f"report-{p.stem}.html" for p in stage_notebooks)]
    assert reports == sorted(expected)
    again = execute(found[REFRESH], spark)  # now every stage is recorded: nothing runs
    assert again["results"] == [] and len(store.read_table(S.RUNS).collect()) == len(runs)
    extra = set(found) - EXPECTED - set(STAGES)
    for name in sorted(extra):  # notebooks beyond the stage set also run (after the rest)
        execute(found[name], spark)
