"""The Databricks Asset Bundle (databricks.yml + resources/*.yml) against the package it deploys.

No Databricks access: the YAML is loaded, ``${var.*}`` and ``{{job.parameters.*}}`` are filled with the
defaults (and a sample date), and each task's entry point and arguments are checked against setup.py
and ``genre_spark.cli.build_parser()``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from genre_spark.cli import build_parser
from genre_spark.config import load_settings
from genre_spark.pipeline import STAGES

ROOT = Path(__file__).resolve().parents[2]
SCORING = "scoring"  # the GPU task; its stage lands with the scoring issue


def load_bundle() -> dict[str, Any]:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    for pattern in bundle["include"]:
        for path in sorted(ROOT.glob(pattern)):
            for kind, items in yaml.safe_load(path.read_text())["resources"].items():
                bundle.setdefault("resources", {}).setdefault(kind, {}).update(items)
    return bundle


def console_scripts() -> dict[str, str]:
    """name -> module:function from setup.py's entry_points (read, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entries = ast.literal_eval(node.value)["console_scripts"]
            return dict(entry.replace(" ", "").split("=", 1) for entry in entries)
    raise AssertionError("setup.py has no entry_points")


def fill(arg: str, bundle: dict[str, Any], job_params: dict[str, str]) -> str:
    variables = {k: str(v.get("default", "")) for k, v in bundle["variables"].items()}
    arg = re.sub(r"\$\{var\.(\w+)\}", lambda m: variables[m.group(1)], arg)
    arg = arg.replace("${workspace.file_path}", "/Workspace/Users/someone/.bundle/genre-spark/dev/files")
    return re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: job_params[m.group(1)], arg)


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    return load_bundle()["resources"]["jobs"]["genre_spark_refresh"]


def test_one_wheel_task_per_stage_in_order(job: dict[str, Any]) -> None:
    tasks = job["tasks"]
    keys = [t["task_key"] for t in tasks]
    stages = list(STAGES) if SCORING in STAGES else [*list(STAGES)[:-1], SCORING, "ranking"]
    assert keys == stages
    assert [t.get("depends_on") for t in tasks] == [None] + [[{"task_key": k}] for k in keys[:-1]]
    scripts = console_scripts()
    for task in tasks:
        wheel = task["python_wheel_task"]
        assert wheel["entry_point"] in scripts, f"task {task['task_key']}: no console script"
        assert scripts[wheel["entry_point"]] == "genre_spark.cli:main"
        assert wheel["package_name"].replace("_", "-") == "genre-spark"
        libraries = [{"whl": "../dist/*.whl"}]
        if task["task_key"] == "discriminator":  # the learned ranker's xgboost, CPU build
            libraries.append({"pypi": {"package": "xgboost-cpu>=3.0,<4"}})
        assert task["libraries"] == libraries
        assert wheel["parameters"][0] == task["task_key"]


def test_every_task_parses_with_the_cli(job: dict[str, Any]) -> None:
    bundle = load_bundle()
    defaults = {p["name"]: p["default"] for p in job["parameters"]}
    assert set(defaults) == {"as_of", "run_id"}
    assert defaults["as_of"] == "{{job.trigger.time.iso_date}}" and defaults["run_id"] == ""
    parser = build_parser()
    for task in job["tasks"]:
        argv = [
            fill(a, bundle, {"as_of": "2011-12-09", "run_id": ""})
            for a in task["python_wheel_task"]["parameters"]
        ]
        if argv[0] == SCORING and SCORING not in STAGES:
            continue  # the task is ready for the scoring stage; nothing to parse yet
        args = parser.parse_args(argv)
        assert args.command == task["task_key"] and str(args.as_of) == "2011-12-09"
        assert not args.run_id  # empty: derived from as_of and config, the same for every task
        settings = load_settings([ROOT / "conf" / "databricks.yaml"], args.overrides)  # --set keys exist
        assert settings.storage.warehouse == bundle["variables"]["warehouse"]["default"]
        assert args.conf == ["/Workspace/Users/someone/.bundle/genre-spark/dev/files/conf/databricks.yaml"]


def test_schedule_paused_in_dev_and_gpu_for_scoring(job: dict[str, Any]) -> None:
    bundle = load_bundle()
    cron = fill(job["schedule"]["quartz_cron_expression"], bundle, {})
    assert len(cron.split()) in (6, 7) and cron.split()[3] == "*"  # quartz: sec min hour day-of-month ...
    targets = bundle["targets"]
    assert targets["dev"]["default"] and targets["dev"]["mode"] == "development"
    assert targets["dev"]["resources"]["jobs"]["genre_spark_refresh"]["schedule"]["pause_status"] == "PAUSED"
    assert (
        targets["prod"]["resources"]["jobs"]["genre_spark_refresh"]["schedule"]["pause_status"] == "UNPAUSED"
    )
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    scoring = next(t for t in job["tasks"] if t["task_key"] == SCORING)
    gpu = clusters[scoring["job_cluster_key"]]
    assert "gpu" in fill(gpu["spark_version"], bundle, {})
    assert {t["job_cluster_key"] for t in job["tasks"] if t["task_key"] != SCORING} == {"cpu"}
    assert bundle["artifacts"]["genre_spark_wheel"]["type"] == "whl"


# Apache Spark of each Databricks Runtime line (Databricks release notes: "Databricks Runtime N.x
# includes Apache Spark V"); a runtime not listed here fails the test until someone looks it up.
RUNTIME_SPARK = {"15": (3, 5), "16": (3, 5), "17": (4, 0)}


def setup_requirements() -> dict[str, Any]:
    """setup.py's install_requires and extras_require, read (not executed): literals and its constants."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants = {
        t.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    return {
        node.arg: eval(
            compile(ast.Expression(node.value), "setup.py", "eval"), {"__builtins__": {}}, constants
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg in ("install_requires", "extras_require")
    }


def test_the_bundle_runs_on_the_spark_the_package_supports() -> None:
    """The wheel does not pull PyPI pyspark onto a cluster that provides Spark, and every runtime the
    bundle names carries a Spark inside the range the package is tested with."""
    keywords = setup_requirements()
    assert not any(r.startswith("pyspark") for r in keywords["install_requires"])
    (pyspark,) = keywords["extras_require"]["spark"]
    low, high = re.fullmatch(r"pyspark>=([\d.]+),<=([\d.]+)", pyspark).groups()  # type: ignore[union-attr]
    supported = (tuple(map(int, low.split(".")))[:2], tuple(map(int, high.split(".")))[:2])
    variables = load_bundle()["variables"]
    runtimes = {k: str(v["default"]) for k, v in variables.items() if k.endswith("spark_version")}
    assert len(runtimes) == 2, runtimes
    for name, runtime in runtimes.items():
        spark = RUNTIME_SPARK[runtime.split(".")[0]]
        assert supported[0] <= spark <= supported[1], f"{name}: {runtime} runs Spark {spark}, not {pyspark}"
