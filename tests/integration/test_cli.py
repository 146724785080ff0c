"""The console script end to end, in its own process (its own Spark session), on a tiny source."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from tests.conftest import NO_CODEGEN

ROOT = Path(__file__).resolve().parents[2]
LINES = [
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom",
]


def one_source(tmp_path: Path, csv: Path) -> list[str]:
    """Options of a local run into ``tmp_path/wh`` that ingests ``csv`` as the 2010-2011 export, alone."""
    return [
        "--conf",
        str(ROOT / "conf" / "local.yaml"),
        "--set",
        "spark.master=local[1]",
        "--set",
        NO_CODEGEN,
        "--set",
        f"storage.warehouse={tmp_path / 'wh'}",
        "--set",
        "ingest.sources.online_retail_ii_2009_2010.enabled=false",
        *source_path(csv),
    ]


def source_path(csv: Path) -> list[str]:
    return ["--set", f"ingest.sources.online_retail_2010_2011.path={csv}"]


def genre_spark(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genre_spark.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.mark.slow
def test_run_ingest_then_rerun_then_bad_input(tmp_path: Path) -> None:
    (tmp_path / "tiny.csv").write_text("\n".join(LINES) + "\n")
    common = ["--as-of", "2011-12-09", *one_source(tmp_path, tmp_path / "tiny.csv")]

    first = genre_spark("run", "--stage", "ingest", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "online_retail_2010_2011" in first.stdout and "missing_user_id" in first.stdout
    assert "table events      version 0: 1 rows written" in first.stdout
    assert len(DeltaTable(str(tmp_path / "wh" / "events")).history()) == 1

    rerun = genre_spark("ingest", *common, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already complete, nothing to do" in rerun.stdout  # before any stage computes
    assert "stage ingest" not in rerun.stdout
    assert len(DeltaTable(str(tmp_path / "wh" / "events")).history()) == 1

    bad = genre_spark(
        "ingest", *common, *source_path(tmp_path / "nope.csv"), "--run-id", "other", cwd=tmp_path
    )
    assert bad.returncode == 3
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("genre-spark: error: source 'online_retail_2010_2011'") and "nope.csv" in last


@pytest.mark.slow
def test_generate_ingest_fit_profile_round_trip(tmp_path: Path) -> None:
    """generate -> ingest of the generated export -> fit-profile: the refit matches the packaged profile."""
    from genre_spark.synthetic import load_profile

    spark = [
        "--set",
        "spark.master=local[2]",
        "--set",
        NO_CODEGEN,
        "--set",
        f"storage.warehouse={tmp_path / 'wh'}",
    ]
    generated = genre_spark("generate", "--users", "400", "--seed", "2", "--out", "gen", *spark, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr[-3000:]
    config = tmp_path / "gen" / "genre-spark.yaml"
    assert f"--conf {config}" in generated.stdout
    local = ["--conf", str(ROOT / "conf" / "local.yaml"), "--conf", str(config)]
    ingested = genre_spark("ingest", *local, *spark, cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    raw = sum(len(pd.read_csv(f)) for f in (tmp_path / "gen" / "events").glob("*.csv.gz"))
    events = DeltaTable(str(tmp_path / "wh" / "events")).to_pandas()
    quarantine = DeltaTable(str(tmp_path / "wh" / "quarantine")).to_pandas()
    # every row lands or is quarantined for its missing customer id (the guests), for nothing else
    assert len(events) + len(quarantine) == raw
    assert set(quarantine["reason"]) == {"missing_user_id"}
    assert (events["event_type"] == "return").sum() > 0
    fitted = genre_spark("fit-profile", "--out", "refit.json", *local, *spark, cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-3000:]

    packaged, refit = load_profile(), load_profile(tmp_path / "refit.json")
    assert 390 <= refit.sample_users <= 400  # a user whose every line was postage has no product purchase
    for name in ("mean_lines_per_order", "mean_orders_per_user", "repeat_share", "item_gini"):
        assert refit.statistics[name] == pytest.approx(packaged.statistics[name], rel=0.15), name
    # ~120 guests with heavy-tailed order counts: their share of rows is noisy at this size
    assert refit.anonymous_share == pytest.approx(packaged.anonymous_share, abs=0.1)


@pytest.mark.slow
def test_two_overlapping_ingests_leave_one_copy(tmp_path: Path) -> None:
    """A scheduler retry overlapping a slow run: two processes ingest the same slice of the sample at
    once under two run ids. Whichever wins, `events` holds each event once, and a loser exits 5 with
    the table named."""
    from tests.conftest import retail_file

    with gzip.open(retail_file("online_retail_2010_2011.csv.gz"), "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(2001)]
    (tmp_path / "slice.csv").write_text("".join(lines))
    common = one_source(tmp_path, tmp_path / "slice.csv")
    command = [sys.executable, "-m", "genre_spark.cli", "ingest", *common, "--run-id"]
    runs = [
        subprocess.Popen(
            [*command, run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
        )
        for run_id in ("a", "b")
    ]
    results = [(run.wait(300), run.stderr.read() if run.stderr else "") for run in runs]
    assert sorted(code for code, _ in results) in ([0, 0], [0, 5]), [err[-2000:] for _, err in results]
    print("exit codes", [code for code, _ in results])
    for code, err in results:
        if code == 5:
            assert "table 'events'" in err.strip().splitlines()[-1]
    events = DeltaTable(str(tmp_path / "wh" / "events")).to_pandas()
    assert events["event_id"].is_unique and len(events) > 1_000
    assert events["ingested_run_id"].nunique() == 1  # the loser, or the later run, added nothing
