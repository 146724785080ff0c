"""Glue for the Databricks notebooks in ``notebooks/``: the widget header, its validation, one call in.

Every notebook is three cells of library calls (``tools/make_notebooks.py`` writes them)::

    widgets = notebook.declare_widgets(globals().get("dbutils"))
    params = notebook.read_params(widgets)
    results = notebook.run(spark, params, stages=["ingest"])

On Databricks the widgets are ``dbutils.widgets`` (a job's parameters fill them). Where ``dbutils`` is
absent (a local Jupyter, the tests) :class:`EnvWidgets` reads ``GENRE_SPARK_<NAME>`` environment
variables instead (``GENRE_SPARK_AS_OF=2011-12-09``), so the same notebook runs unchanged. The Spark
session is the notebook's own ``spark``; nothing here creates one.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pyspark.sql import SparkSession

from genre_spark.config import Settings, default_run_id, load_settings
from genre_spark.errors import ConfigError
from genre_spark.pipeline import RunContext, StageResult
from genre_spark.refresh import run_once
from genre_spark.session import session_conf
from genre_spark.strategy import context_for, load_strategies

ENV_PREFIX = "GENRE_SPARK_"


@dataclass(frozen=True)
class Widget:
    name: str
    label: str


# The widget header of every notebook, in display order. Empty means "the default".
WIDGETS: tuple[Widget, ...] = (
    Widget("as_of", "as-of date YYYY-MM-DD (empty: today, UTC)"),
    Widget("config", "config YAML files over the packaged defaults, comma-separated"),
    Widget("warehouse", "warehouse root: path or URI (empty: storage.warehouse from config)"),
    Widget("catalog", "Unity Catalog catalog of the tables (empty: storage.catalog from config)"),
    Widget("schema", "schema of the tables: catalog tables instead of paths (empty: from config)"),
    Widget("run_id", "run id (empty: <as_of>-<config hash>; a rerun is a no-op)"),
    Widget("context_hour", "hour 0-23 the lists are made for (empty: none)"),
)


class WidgetSource(Protocol):
    """The part of ``dbutils.widgets`` the notebooks use."""

    def text(self, name: str, defaultValue: str, label: str) -> None: ...

    def get(self, name: str) -> str: ...


class EnvWidgets:
    """Widgets outside Databricks: ``GENRE_SPARK_<NAME>`` environment variables, else the default."""

    def __init__(self) -> None:
        self._defaults: dict[str, str] = {}

    def text(self, name: str, defaultValue: str, label: str) -> None:
        self._defaults[name] = defaultValue

    def get(self, name: str) -> str:
        if name not in self._defaults:
            raise ConfigError(f"widget '{name}' was not declared; declared: {sorted(self._defaults)}")
        return os.environ.get(ENV_PREFIX + name.upper(), self._defaults[name])


def declare_widgets(dbutils: Any | None) -> WidgetSource:
    """Declare the header widgets (empty text boxes) and return where to read them from."""
    source: WidgetSource = EnvWidgets() if dbutils is None else dbutils.widgets
    for widget in WIDGETS:
        source.text(widget.name, "", widget.label)
    return source


@dataclass(frozen=True)
class NotebookParams:
    as_of: dt.date
    config_files: tuple[str, ...]
    warehouse: str | None
    run_id: str | None
    context_hour: int | None
    catalog: str | None = None
    schema: str | None = None

    def overrides(self) -> list[str]:
        """Config overrides the widgets imply (``--set`` syntax)."""
        values = {"warehouse": self.warehouse, "catalog": self.catalog, "database": self.schema}
        return [f"storage.{key}={value}" for key, value in values.items() if value is not None]


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def read_params(widgets: WidgetSource, *, today: dt.date | None = None) -> NotebookParams:
    """Read and check every widget; a bad one raises :class:`ConfigError` naming the widget and value."""
    raw = {w.name: widgets.get(w.name).strip() for w in WIDGETS}

    as_of = today or dt.datetime.now(dt.timezone.utc).date()
    if raw["as_of"]:
        try:
            as_of = dt.date.fromisoformat(raw["as_of"])
        except ValueError:
            raise ConfigError(f"widget 'as_of': expected a date YYYY-MM-DD, got {raw['as_of']!r}") from None

    files = tuple(p.strip() for p in raw["config"].split(",") if p.strip())
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise ConfigError(
            f"widget 'config': file(s) {missing} do not exist (workspace files are under /Workspace/...)"
        )

    run_id = raw["run_id"] or None
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"widget 'run_id': {run_id!r} must start with a letter or digit and hold only "
            "letters, digits and . _ : -"
        )

    hour = None
    if raw["context_hour"]:
        if not raw["context_hour"].isdigit() or not 0 <= int(raw["context_hour"]) <= 23:
            raise ConfigError(f"widget 'context_hour': expected an hour 0-23, got {raw['context_hour']!r}")
        hour = int(raw["context_hour"])

    names = {}
    for key in ("catalog", "schema"):
        if raw[key] and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw[key]):
            raise ConfigError(f"widget '{key}': {raw[key]!r} is not an identifier (letters, digits, _)")
        names[key] = raw[key] or None
    if names["catalog"] and not names["schema"]:
        raise ConfigError(f"widget 'catalog': {names['catalog']!r} needs the widget 'schema' too")
    return NotebookParams(
        as_of, files, raw["warehouse"] or None, run_id, hour, names["catalog"], names["schema"]
    )


def load_params_settings(params: NotebookParams) -> Settings:
    return load_settings(params.config_files, params.overrides())


def apply_session_conf(spark: SparkSession, settings: Settings) -> None:
    """Set what a running session can still take of spark.conf (its SQL settings) and the library's own.

    A notebook's session was not built by genre-spark: settings such as the co-partitioning one of
    conf/default.yaml would otherwise be missing; static ones (memory, extensions) belong to the cluster, and
    so does ``spark.shuffle_partitions`` (8 suits one machine; the cluster's own count and AQE know better).
    """
    for key, value in session_conf(settings.spark).items():
        if spark.conf.isModifiable(key):
            spark.conf.set(key, value)


def run(
    spark: SparkSession, params: NotebookParams, stages: Sequence[str] | None = None
) -> list[StageResult]:
    """Run ``stages`` (all when None) for the widgets' date into the configured warehouse; print a summary."""
    from genre_spark.storage import open_store  # after the config checks, like the CLI

    settings = load_params_settings(params)
    strategies = load_strategies(settings.strategies_file)
    context = context_for(params.as_of, params.context_hour, settings.features.hour_bands)
    run_id = params.run_id or default_run_id(settings, params.as_of, strategies, context.hour_band)
    apply_session_conf(spark, settings)
    store = open_store(spark, settings.storage)
    print(
        f"genre-spark run {run_id} as of {params.as_of}: warehouse {store.warehouse} ({store.backend} Delta)"
    )
    ctx = RunContext(spark, store, settings, params.as_of, run_id, strategies, context)
    outcome = run_once(ctx, stages)  # the stages, then retention, latest pointer, run record
    print(outcome.format())
    return list(outcome.results)


# --------------------------------------------------------------------------- notebook sources

CELL = "\n\n# COMMAND ----------\n\n"
HEADER = "# Databricks notebook source"
REFRESH = "refresh"


def notebook_source(stage: str | None) -> str:
    """Databricks source of the notebook for one stage, or of the whole refresh when ``stage`` is None.

    ``tools/make_notebooks.py`` writes one per stage in ``pipeline.STAGES`` plus ``refresh.py``; a new
    stage gets its notebook by rerunning it.
    """
    if stage is None:
        title, what, call = "refresh", "every stage, in pipeline order", "notebook.run(spark, params)"
    else:
        title, what, call = stage, f"the `{stage}` stage", f'notebook.run(spark, params, stages=["{stage}"])'
    intro = "\n".join(
        f"# MAGIC {line}".rstrip()
        for line in (
            f"%md\n# genre-spark: {title}\n\nRuns {what} for one as-of date with the installed "
            "`genre-spark` wheel.\nFill the widgets (a job's parameters do): `as_of`, `config` "
            "(workspace YAML files), `warehouse`\nor `catalog` + `schema` (tables by name), `run_id` "
            "(empty: derived, so a rerun is a no-op), `context_hour`."
        ).splitlines()
    )
    cells = [
        intro,
        'from genre_spark import notebook\n\nwidgets = notebook.declare_widgets(globals().get("dbutils"))',
        "params = notebook.read_params(widgets)  # fails here, naming the widget, on a bad value\nparams",
        f"results = {call}",
    ]
    return HEADER + "\n" + CELL.join(cells) + "\n"
