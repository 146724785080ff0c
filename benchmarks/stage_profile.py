"""Where a stage's time goes: Spark stage metrics (task time, CPU, shuffle, spill) per candidate source,
or by call site for the ingest, features and ranking stages.

    python benchmarks/stage_profile.py --warehouse W --conf W/../data/genre-spark.yaml --as-of 2011-12-09
    python benchmarks/stage_profile.py --stage ingest --warehouse NEW --conf D/genre-spark.yaml
    python benchmarks/stage_profile.py --stage ranking --warehouse W --conf D/genre-spark.yaml --as-of DATE

Ingest (--stage ingest): the run of `genre-spark ingest` into NEW (a folder that must not exist yet; D is
what `genre-spark generate` wrote); features and ranking (--stage features|ranking --as-of D) run in full on
W (they write a new version of their table: use a scratch warehouse). For these: the whole stage (task, CPU,
GC time, shuffle, spill, the SQL operators with the most time), then its Spark stages grouped by the call
site Spark gives them: wall seconds from the first submission to the last completion, task and CPU time,
bytes read, shuffle write and spill. Results: benchmarks/results/profile_<stage>.md.

Candidates (the default):

W is a warehouse that already holds the as-of date's inputs of the candidates stage (events, items,
item_embeddings, user_segments): what `benchmarks/scale.py --keep` or `benchmarks/ranker.py` leave. Settings:
conf/local.yaml + conf/scale.yaml + the --conf files (with --sample the shipped sample's: conf/local.yaml +
the --conf files). Each candidate source with a limit above 0 runs on its own into Spark's `noop` sink
(computed in full, nothing written), over the inputs the stage shares (the persisted purchases and per-item
history, built first and timed as "inputs"). With --cutoff-sample they
propose only for the training sample a cut-off on that date would (as the discriminator's stages do
there); with --union, then all of them unioned into the noop sink, which is what the stage computes
before its write. For each: wall seconds, the summed task time and CPU time of its Spark stages, JVM GC
time, shuffle bytes written, bytes spilled (memory and disk), and the SQL operators with the most time in
their metrics (sort time, aggregation build time, shuffle write time, Python UDF time, ...), with their spill.

Results: benchmarks/results/profile_candidates.md (rewritten after every source).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from machine import compute, describe, scale_settings  # benchmarks/machine.py (scripts run from their folder)
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import SOURCES, SourceInputs, generate_candidates
from genre_spark.config import Settings, load_settings
from genre_spark.features import run_features
from genre_spark.history import History, purchase_history
from genre_spark.ingest import run_ingest
from genre_spark.learned.stage import feature_users
from genre_spark.ranking import run_ranking
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store
from genre_spark.strategy import context_for, load_strategies

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "profile_candidates.md"
GB = 1e9


UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "ns": 1e-9, "B": 1.0, "KiB": 2**10, "MiB": 2**20}
UNITS |= {"GiB": 2**30, "TiB": 2**40}


def metric_total(value: str) -> float:
    """The total of a SQL metric as Spark's REST API prints it: "1,234", "12.3 s", or a first line
    "total (min, med, max (stageId: taskId))" and then "12.3 s (0 ms, 1 ms, 2 ms (stage 1.0: task 3))"."""
    number, _, unit = value.strip().splitlines()[-1].split(" (")[0].partition(" ")
    return float(number.replace(",", "")) * UNITS.get(unit, 1.0)


class SparkMetrics:
    """What Spark ran since the last mark, from its REST API: completed stages (task time, CPU, GC,
    shuffle, spill) and the SQL operators of completed queries (their timing and spill metrics)."""

    def __init__(self, spark: SparkSession) -> None:
        sc = spark.sparkContext
        self.app = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
        self.seen_stages: set[tuple[int, int]] = set()
        self.seen_queries: set[int] = set()
        self.since()

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.app}/{path}", timeout=60) as response:
            return json.load(response)

    def since(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        stages = self._get("stages?status=complete&details=false")
        new = [s for s in stages if (s["stageId"], s["attemptId"]) not in self.seen_stages]
        self.seen_stages |= {(s["stageId"], s["attemptId"]) for s in new}
        queries = self._get("sql?details=true&planDescription=false&length=100000")
        done = [q for q in queries if q["status"] == "COMPLETED" and q["id"] not in self.seen_queries]
        self.seen_queries |= {q["id"] for q in done}
        return new, done


def operator_costs(queries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per operator name: its timing metrics summed (seconds) and its spill (bytes)."""
    costs: dict[str, dict[str, float]] = {}
    for query in queries:
        for node in query.get("nodes", []):
            cost = costs.setdefault(node["nodeName"], {"time": 0.0, "spill": 0.0})
            for m in node.get("metrics", []):
                name = m["name"].lower()
                try:
                    total = metric_total(m["value"])
                except ValueError:
                    continue
                if "spill" in name:
                    cost["spill"] += total
                elif "time" in name and "number" not in name:
                    cost["time"] += total
    return costs


def summary(name: str, seconds: float, stages: list[dict[str, Any]], queries: list[dict[str, Any]]) -> dict:
    def total(key: str) -> float:
        return float(sum(s.get(key, 0) for s in stages))

    costs = operator_costs(queries)
    top = sorted(costs.items(), key=lambda kv: kv[1]["time"], reverse=True)[:4]
    return {
        "part": name,
        "wall_s": seconds,
        "spark_stages": len(stages),
        "task_s": total("executorRunTime") / 1e3,
        "cpu_s": total("executorCpuTime") / 1e9,
        "gc_s": total("jvmGcTime") / 1e3,
        "shuffle_write_gb": total("shuffleWriteBytes") / GB,
        "spill_gb": (total("memoryBytesSpilled") + total("diskBytesSpilled")) / GB,
        "disk_spill_gb": total("diskBytesSpilled") / GB,
        "top": [
            f"{op} {c['time']:.0f} s" + (f" (spill {c['spill'] / GB:.1f} GB)" if c["spill"] > 1e8 else "")
            for op, c in top
        ],
    }


def timed(metrics: SparkMetrics, name: str, action: Any) -> dict[str, Any]:
    started = time.perf_counter()
    action()
    row = summary(name, time.perf_counter() - started, *metrics.since())
    print(json.dumps(row), flush=True)
    return row


def write(rows: list[dict[str, Any]], header: str, out: Path) -> None:
    lines = [
        header,
        "",
        "| part | wall s | Spark stages | task s | CPU s | GC s | shuffle write GB | spill GB (disk) | "
        "SQL operators by their time metrics |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['part']} | {r['wall_s']:.1f} | {r['spark_stages']} | {r['task_s']:.1f} | "
            f"{r['cpu_s']:.1f} | {r['gc_s']:.1f} | {r['shuffle_write_gb']:.2f} | "
            f"{r['spill_gb']:.2f} ({r['disk_spill_gb']:.2f}) | "
            f"{'; '.join(r['top'])} |"
        )
    out.write_text("\n".join(lines) + "\n")


def _seconds(timestamp: str) -> float:
    """A REST API time ("2026-12-02T05:40:00.123GMT") as epoch seconds."""
    return dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%Z").replace(tzinfo=dt.UTC).timestamp()


def by_call_site(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spark stages grouped by the line that started their job ("count at .../stage.py:203"), in the order
    they ran: wall seconds from the first submission to the last completion, summed task metrics."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for stage in sorted(stages, key=lambda s: s["submissionTime"]):
        groups.setdefault(stage["name"], []).append(stage)
    rows = []
    for name, group in groups.items():
        first = min(_seconds(s["submissionTime"]) for s in group)
        last = max(_seconds(s["completionTime"]) for s in group)
        row = summary(name.replace(str(ROOT) + "/", ""), last - first, group, [])
        row["top"] = [f"input {sum(s['inputBytes'] for s in group) / GB:.2f} GB"]
        rows.append(row)
    return rows


def configs(args: argparse.Namespace) -> str:
    """The config files the settings came from, for a results header."""
    return "conf/local.yaml" if args.sample else "conf/local.yaml + conf/scale.yaml"


def run_stage(stage: str, args: argparse.Namespace, settings: Settings, spark: SparkSession) -> str:
    """Runs ``stage`` in full on the warehouse (ingest: a new one); returns its report."""
    store = open_store(spark, settings.storage)
    if stage == "ingest":
        return run_ingest(spark, store, settings.ingest, "profile").format()
    history = History.read(store, args.as_of)
    if stage == "features":
        n_categories = settings.enrich.n_categories
        return run_features(store, history, settings.features, n_categories, "profile").format()
    ctx = context_for(args.as_of, 9, settings.features.hour_bands)
    book = load_strategies(settings.strategies_file)
    return run_ranking(spark, store, history, book, ctx, settings.ranking.k, "profile").format()


def profile_stage(stage: str, args: argparse.Namespace, settings: Settings, spark: SparkSession) -> Path:
    """The whole stage, then its Spark stages grouped by call site."""
    metrics = SparkMetrics(spark)
    started = time.perf_counter()
    report = run_stage(stage, args, settings, spark)
    seconds = time.perf_counter() - started
    stages, queries = metrics.since()
    rows = [summary(f"{stage} (the whole stage)", seconds, stages, queries), *by_call_site(stages)]
    header = (
        f"# {stage.capitalize()} stage profile (benchmarks/stage_profile.py --stage {stage})\n\n"
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {describe()}; "
        f"`python benchmarks/stage_profile.py --stage {stage} --warehouse W"
        f"{''.join(f' --conf {c}' for c in args.conf)}{''.join(f' --set {s}' for s in args.set)}"
        f"{f' --as-of {args.as_of}' if args.as_of else ''}{' --sample' if args.sample else ''}`; "
        f"{configs(args)}. The first "
        "row is the whole stage; the others group its Spark stages by the call site Spark gives them (their "
        "last column holds the bytes they read instead).\n\n```\n" + report + "\n```"
    )
    out = args.out or RESULTS.with_name(f"profile_{stage}.md")
    write(rows, header, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--conf", type=Path, action="append", default=[])
    parser.add_argument(
        "--stage", choices=["candidates", "ingest", "features", "ranking"], default="candidates"
    )
    parser.add_argument("--as-of", type=dt.date.fromisoformat, help="the date (all stages but ingest)")
    parser.add_argument("--set", action="append", default=[], help="config overrides, as for genre-spark")
    parser.add_argument("--only", nargs="*", help="these sources only (default: every source on)")
    parser.add_argument("--out", type=Path, help="default: results/profile_<stage>.md")
    parser.add_argument("--union", action="store_true", help="then all of them unioned (doubles the time)")
    parser.add_argument(
        "--cutoff-sample",
        action="store_true",
        help="propose only for the training sample a cut-off on --as-of would (learned.stage.feature_users)",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="the shipped sample's settings (conf/local.yaml and --conf, without conf/scale.yaml)",
    )
    args = parser.parse_args()
    overrides = [f"storage.warehouse={args.warehouse}", "spark.ui_enabled=true", *args.set]
    if args.sample:
        settings = load_settings([ROOT / "conf" / "local.yaml", *args.conf], overrides)
    else:
        settings = scale_settings(args.conf, overrides)
    spark = build_spark_session(settings.spark)
    if args.stage == "ingest" and args.warehouse.exists():
        parser.error(f"{args.warehouse} exists: the ingest profile writes a new warehouse")
    if args.stage != "ingest" and args.as_of is None:
        parser.error(f"--as-of is required for the {args.stage}")
    if args.stage != "candidates":
        print(profile_stage(args.stage, args, settings, spark).read_text())
        return
    out = args.out or RESULTS
    store = open_store(spark, settings.storage)
    metrics = SparkMetrics(spark)
    history = History.read(store, args.as_of)
    segments = store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(args.as_of))
    users = segments.count()
    cap = settings.discriminator.max_training_users
    sample = f" proposing for a training cut-off's sample of at most {cap:,}" if args.cutoff_sample else ""
    header = (
        "# Candidates stage profile (benchmarks/stage_profile.py)\n\n"
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{describe()}; `python benchmarks/stage_profile.py --warehouse {args.warehouse} --as-of {args.as_of}"
        f"{''.join(f' --set {s}' for s in args.set)}{' --cutoff-sample' if args.cutoff_sample else ''}"
        f"{' --sample' if args.sample else ''}`; {users:,} users{sample}; {configs(args)}."
    )
    purchases = history.purchases().persist(StorageLevel.MEMORY_AND_DISK)
    per_item = purchase_history(purchases).persist(StorageLevel.MEMORY_AND_DISK)
    rows = [timed(metrics, "inputs (purchases, per-item history)", lambda: per_item.count())]
    limits = settings.candidates.limits
    inputs = SourceInputs(
        purchases,
        per_item,
        segments,
        history.items,
        store.read_table(S.ITEM_EMBEDDINGS),
        settings.candidates,
        args.as_of,
        feature_users(store, history, settings.discriminator).localCheckpoint()
        if args.cutoff_sample
        else None,
    )
    on = [name for name in SOURCES if limits.get(name, 0) and (not args.only or name in args.only)]
    for name in on:
        rows.append(timed(metrics, name, lambda name=name: compute(SOURCES[name](inputs, limits[name]))))
        write(rows, header, out)
    if args.union:
        rows.append(timed(metrics, "all sources, unioned", lambda: compute(generate_candidates(inputs))))
        write(rows, header, out)
    print(out.read_text())


if __name__ == "__main__":
    main()
