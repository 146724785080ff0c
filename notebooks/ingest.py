# Databricks notebook source
# MAGIC %md
# MAGIC # genre-spark: ingest
# MAGIC
# MAGIC Runs the `ingest` stage for one as-of date with the installed `genre-spark` wheel.
# MAGIC Fill the widgets (a job's parameters do): `as_of`, `config` (workspace YAML files), `warehouse`
# MAGIC or `catalog` + `schema` (tables by name), `run_id` (empty: derived, so a rerun is a no-op), `context_hour`.

# COMMAND ----------

from genre_spark import notebook

widgets = notebook.declare_widgets(globals().get("dbutils"))

# COMMAND ----------

params = notebook.read_params(widgets)  # fails here, naming the widget, on a bad value
params

# COMMAND ----------

results = notebook.run(spark, params, stages=["ingest"])
