"""The whole pipeline on synthetic data at growing scale: time, rows and peak memory per stage.

    python benchmarks/scale.py --users 100000 1000000       # the issue's sizes (hours on 2 cores)
    python benchmarks/scale.py --users 20000 200000         # the same 10x step, smaller
    python benchmarks/scale.py --users 100000 1000000 --large   # adds 5M
    python benchmarks/scale.py --users 100000 --items 100000 --out benchmarks/results/scale_items.md
                                                             # a wider catalog than the sample's growth
    python benchmarks/scale.py --users 10000 --items 0 100000 --out benchmarks/results/scale_items.md
                                                             # one user count, two catalogs (0: the growth)

For each size N: `genre-spark generate --users N` (the packaged profile, seed 0) writes the raw export
under --work, then every stage runs in order in a fresh local Spark session with conf/local.yaml +
conf/scale.yaml + the generated source config, as of the profile's last day. Per stage: wall time,
rows written, and the peak JVM heap and Python-worker RSS Spark reports for the driver (in local
mode the driver is the executor) through its REST API, as peaks so far in the session. The driver
process's own Python peak RSS is reported too. The ratio column is t(last size) / t(first size) per
stage; with a 10x step, <= 11 is about linear. With several --items, every user count runs with each
catalog (users x items sizes), so the ratio of one user count's catalogs shows what grows with the catalog.

The language-model scorers are off unless --scoring: the bi-encoder's cost is one profile encoding
per user (about 150 profiles/s on these 2 cores, see benchmarks/results/scoring.md), linear by
construction and measured there; at 1M users it alone would take about two hours here.

Results: benchmarks/results/scale.md (and scale.json), with the machine's cores and memory, rewritten
after every stage. A size's data and tables stay under --work until all its stages ran, so an interrupted
run continues with --resume: the stages already in scale.json are kept (each with the time it was
measured), the rest run on the tables the interrupted run left, in a new Spark session. If the
interrupted run had already committed the stage it was in (so the rerun would skip its writes), --resume
stops rather than record a time that measured nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from machine import describe  # benchmarks/machine.py (scripts run from their folder)

from genre_spark import synthetic
from genre_spark.config import load_settings
from genre_spark.pipeline import STAGES, RunContext, run_stages
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store
from genre_spark.strategy import context_for, load_strategies

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results"
GIB = 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--large", action="store_true", help="add 5,000,000 users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--items",
        type=int,
        nargs="+",
        default=[0],
        help="catalog size(s) of the runs (0, the default: the sample's growth for the user count)",
    )
    parser.add_argument("--scoring", action="store_true", help="keep the bi-encoder scorer on")
    parser.add_argument("--work", type=Path, default=Path("/tmp/genre-spark-scale"), help="data + warehouses")
    parser.add_argument("--keep", action="store_true", help="keep each size's data and warehouse")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.md")
    parser.add_argument("--resume", action="store_true", help="keep --out's measured stages")
    args = parser.parse_args()
    users_sizes = sorted(set(args.users + ([5_000_000] if args.large else [])))
    profile = synthetic.load_profile()
    sizes = [(users, items or profile.catalog_size(users)) for users in users_sizes for items in args.items]
    previous: dict[tuple[int, int], dict[str, Any]] = {}
    if args.resume:
        previous = {
            (r["users"], r["catalog"]): r for r in json.loads(args.out.with_suffix(".json").read_text())
        }
    runs: list[dict[str, Any]] = []
    for users, catalog in sizes:
        run = previous.get((users, catalog)) or {"users": users, "catalog": catalog}
        runs.append(run)
        if not _complete(run):
            run_size(run, args, lambda: write_results(runs, args))
    write_results(runs, args)
    print(args.out.read_text())


def _complete(run: dict[str, Any]) -> bool:
    return len(run.get("stages", [])) == 1 + len(STAGES)  # generate + every pipeline stage


def run_size(run: dict[str, Any], args: argparse.Namespace, measured: Callable[[], None]) -> None:
    """Generate ``run["users"]`` users and run every stage; ``run["stages"]`` grows a row per stage and
    ``measured`` is called after each, so a run stopped half-way leaves what it measured. A run that
    already has stages (``--resume``) skips them and continues on the data and tables under --work."""
    users, catalog = run["users"], run["catalog"]
    folder = args.work / f"users-{users}-items-{catalog}"
    stages: list[dict[str, Any]] = run.get("stages", [])
    resume = bool(stages) and stages[0]["stage"] == "generate"
    if resume and not (folder / "data" / "genre-spark.yaml").is_file():
        raise SystemExit(f"--resume: {users:,} users has {len(stages)} stages measured, no data in {folder}")
    if resume:
        run.setdefault("resumed", []).append({"at": _now(), "stage": list(STAGES)[len(stages) - 1]})
    else:
        stages = []
        shutil.rmtree(folder, ignore_errors=True)
    run["stages"] = stages
    profile = synthetic.load_profile()
    overrides = [
        f"storage.warehouse={folder / 'warehouse'}",
        "spark.ui_enabled=true",  # the REST API reports peak memory
        "spark.conf.spark.executor.processTreeMetrics.enabled=true",
    ]
    if not args.scoring:
        overrides.append("scoring.bi_encoder.enabled=false")
    base = [ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml"]
    spark = build_spark_session(load_settings(base, overrides).spark)

    def done(stage: str, seconds: float, rows: int) -> None:
        stages.append(_row(stage, seconds, rows, spark))
        run["driver_python_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
        measured()

    try:
        if resume:
            config = folder / "data" / "genre-spark.yaml"
        else:
            started = time.perf_counter()
            config = synthetic.write_generated(
                synthetic.generate_events(spark, profile, users, args.seed, catalog), folder / "data"
            )
            rows = spark.read.option("header", True).csv(str(folder / "data" / "events")).count()
            done("generate", time.perf_counter() - started, rows)
            print(f"{users:,} users: generated {rows:,} rows in {stages[-1]['seconds']:.0f} s", flush=True)
        settings = load_settings([*base, config], overrides)
        as_of = profile.span_end
        store = open_store(spark, settings.storage)
        ctx = RunContext(
            spark,
            store,
            settings,
            as_of,
            f"scale-{users}",
            load_strategies(settings.strategies_file),
            context_for(as_of, 9, settings.features.hour_bands),
        )
        for stage in list(STAGES)[len(stages) - 1 :]:
            (result,) = run_stages(ctx, [stage])
            if resume and any(write.skipped for _, write in store.write_log):
                # the interrupted run had committed this stage's tables (same run id): nothing was redone
                raise SystemExit(f"--resume: {stage} had been committed, its time measures nothing; rerun")
            done(stage, result.seconds, result.rows)
        run["files"] = _table_files(folder / "warehouse")
        measured()
    finally:
        spark.stop()
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


def _now() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def _row(stage: str, seconds: float, rows: int, spark: Any) -> dict[str, Any]:
    return {"stage": stage, "seconds": seconds, "rows": rows, "measured_at": _now(), **_peak_memory(spark)}


def _peak_memory(spark: Any) -> dict[str, float | None]:
    """Peak JVM heap and Python worker RSS so far, from Spark's REST API (None where not reported)."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            executors = json.load(response)
    except OSError:
        return {"jvm_heap_gib": None, "python_rss_gib": None}
    peaks = [e.get("peakMemoryMetrics") or {} for e in executors]

    def peak(key: str) -> float | None:
        values = [p[key] for p in peaks if p.get(key)]
        return max(values) / GIB if values else None

    return {"jvm_heap_gib": peak("JVMHeapMemory"), "python_rss_gib": peak("ProcessTreePythonRSSMemory")}


def write_results(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    first, last = runs[0], runs[-1]
    steps = [
        f"{last[key] / first[key]:.3g}x {name}"
        for key, name in (("users", "users"), ("catalog", "items"))
        if last[key] != first[key]
    ]
    several_catalogs = len({r["catalog"] for r in runs}) > 1

    def size(r: dict[str, Any]) -> str:
        return f"{r['users']:,} users" + (f" x {r['catalog']:,} items" if several_catalogs else "")

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    sizes = " / ".join(f"{r['users']:,}" for r in runs)
    users = " ".join(map(str, sorted({r["users"] for r in runs})))
    catalogs = " / ".join(f"{r['catalog']:,}" for r in runs)
    lines = [
        "# Pipeline at scale (benchmarks/scale.py)",
        "",
        f"{_now()}; {describe()}; "
        f"Python {sys.version.split()[0]}; "
        f"local Spark with conf/local.yaml + conf/scale.yaml; scorers {'on' if args.scoring else 'off'}; "
        f"seed {args.seed}.",
        f"Command: `python benchmarks/scale.py --users {users}"
        f"{' --items ' + ' '.join(map(str, args.items)) if args.items != [0] else ''}"
        f"{' --scoring' if args.scoring else ''}`",
        "",
        f"Users: {sizes}; catalog: {catalogs} items.",
        "Peak memory: largest so far in the session (JVM heap / Python workers' RSS), largest size run.",
        "",
    ]
    header = "| stage | " + " | ".join(f"s @ {size(r)}" for r in runs)
    header += " | " + " | ".join(f"rows @ {size(r)}" for r in runs)
    if len(runs) > 1:
        header += f" | ratio ({', '.join(steps)})"
    lines += [header + " | peak heap GiB | peak Python GiB |"]
    lines += ["|---|" + "---:|" * (2 * len(runs) + (len(runs) > 1) + 2)]
    names = [s["stage"] for s in first["stages"]]
    for name in [*names, "total (pipeline)"]:
        if name == "total (pipeline)":
            secs = [
                sum(s["seconds"] for s in r["stages"] if s["stage"] != "generate") if _complete(r) else None
                for r in runs
            ]
            rows = ["" for _ in runs]
            heap = python = None
        else:
            by = [next((s for s in r["stages"] if s["stage"] == name), None) for r in runs]
            secs = [s["seconds"] if s else None for s in by]
            rows = [f"{s['rows']:,}" if s else "-" for s in by]
            latest = next(s for s in reversed(by) if s)
            heap, python = latest["jvm_heap_gib"], latest["python_rss_gib"]
        row = f"| {name} | " + " | ".join(cell(v, ".1f") for v in secs) + " | " + " | ".join(rows)
        if len(runs) > 1:
            first_s, last_s = secs[0], secs[-1]
            row += " | " + (f"{last_s / first_s:.2f}" if first_s and last_s and first_s > 0.5 else "-")
        lines.append(row + f" | {cell(heap, '.2f')} | {cell(python, '.2f')} |")
    lines += [
        "",
        "Driver Python process peak RSS: "
        + ", ".join(f"{r['driver_python_peak_rss_gib']:.2f} GiB @ {size(r)}" for r in runs if r["stages"])
        + ". A '-' is a stage not (yet) measured at that size.",
    ]
    for r in runs:
        for resumed in r.get("resumed", []):
            lines += [
                "",
                f"{size(r)} were resumed at `{resumed['stage']}` on {resumed['at']} (`--resume`, "
                "same data and tables, a new Spark session: peak memory restarts there). Each stage's "
                "`measured_at` is in scale.json.",
            ]
    if "files" in last:
        lines += [
            "",
            f"Files per table at {size(last)} (latest snapshot: files, mean MB per file):",
            "",
        ]
        lines += [", ".join(f"`{t}` {n} x {mb:.1f}" for t, (n, mb) in last["files"].items()) + "."]
    args.out.write_text("\n".join(lines) + "\n")


def _table_files(warehouse: Path) -> dict[str, tuple[int, float]]:
    """Per table: Parquet files in the latest snapshot and their mean size in MB (small files show here)."""
    out = {}
    for folder in sorted(p for p in warehouse.iterdir() if (p / "_delta_log").is_dir()):
        sizes = DeltaTable(str(folder)).get_add_actions(flatten=True).column("size_bytes").to_pylist()
        out[folder.name] = (len(sizes), sum(sizes) / max(len(sizes), 1) / 1e6)
    return out


if __name__ == "__main__":
    main()
