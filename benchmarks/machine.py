"""Shared by the benchmarks: the machine's facts for results headers, and interleaved timing rounds
reported as medians with ratios to a baseline (machines here are noisy, so only ratios measured in one
run compare)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame

from genre_spark import schemas as S
from genre_spark.config import Settings, load_settings
from genre_spark.learned.stage import strategy_indices
from genre_spark.strategy import load_strategies

ROOT = Path(__file__).parents[1]


def memory_gib() -> float:
    """Physical memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def describe() -> str:
    """'2 cores, 24 GiB, x86_64': for the first line of a results file."""
    return f"{os.cpu_count()} cores, {memory_gib():.0f} GiB, {platform.processor() or platform.machine()}"


def scale_settings(conf: list[Path], overrides: list[str]) -> Settings:
    """conf/local.yaml + conf/scale.yaml + ``conf`` (a generated data set's genre-spark.yaml) with
    ``overrides``: the settings `benchmarks/scale.py` runs the pipeline with."""
    return load_settings([ROOT / "conf" / "local.yaml", ROOT / "conf" / "scale.yaml", *conf], overrides)


def first_strategy_indices(segments: DataFrame, settings: Settings) -> DataFrame:
    """The ranker's strategy-index feature with every segment of ``segments`` given the book's first
    strategy: one value for all, so that two ways of computing the pair features compare."""
    book = load_strategies(settings.strategies_file)
    ids = segments.select(S.SEGMENT_ID).distinct().collect()  # one row per segment
    return strategy_indices(segments, {r[0]: next(iter(book.strategies)) for r in ids}, book)


def compute(frame: DataFrame) -> None:
    """Run every row of ``frame`` through its plan into Spark's noop sink: computed, nothing written."""
    frame.write.format("noop").mode("overwrite").save()


def interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Wall seconds of each case, ``repeat`` rounds, every round running each case once in order, so a
    slow spell of the machine hits every case alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_table(times: dict[str, list[float]], baseline: str, label: str, digits: int = 2) -> list[str]:
    """Markdown rows: case, median seconds, median / the baseline's median."""
    base = statistics.median(times[baseline])
    lines = [f"| {label} | median s | ratio to {baseline} |", "|---|---:|---:|"]
    for name, ts in times.items():
        median = statistics.median(ts)
        lines.append(f"| {name} | {median:.{digits}f} | {median / base:.2f} |")
    return lines


def write_report(path: Path, title: str, command: str, setup: str, table: list[str]) -> None:
    """Write (and print) a results file: the title, the command and the machine it ran on, the setup,
    then the table."""
    text = "\n".join([f"# {title}", "", f"`{command}` on {describe()}; {setup}", "", *table]) + "\n"
    path.write_text(text)
    print(text, end="")
