"""The HTML run report (genre_spark/report.py) and its headless-Chromium screenshot (tools/)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from genre_spark import schemas as S
from genre_spark.config import Settings
from genre_spark.feedback import Arm, state_rows
from genre_spark.pipeline import RunContext, StageResult
from genre_spark.report import write_run_report
from genre_spark.segments import segment_plot_name
from genre_spark.storage import TableStore
from genre_spark.strategy import context_for, load_strategies

ROOT = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2011, 12, 9)
RUN = "report-run"


def plot() -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for i, colour in enumerate(["tab:blue", "tab:orange", "tab:green"]):
        ax.scatter([i + x / 50 for x in range(200)], [(x * 7 % 13) + i for x in range(200)], s=30, c=colour)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()


@pytest.fixture()
def report(spark: SparkSession, settings: Settings, store: TableStore) -> Path:
    """A report for a run that ranked 3 users with 2 strategies, quarantined rows and wrote metrics."""
    recs = [
        (RUN, AS_OF, f"u{u}", 1, "i1", 1.0, 0, "discovery" if u < 2 else "win_back", ["als"], "x", "v")
        for u in range(3)
    ]
    store.write_table(
        spark.createDataFrame(recs, S.contract(S.RECOMMENDATIONS)),
        S.RECOMMENDATIONS,
        mode="overwrite",
        run_id=RUN,
        stage="ranking",
        partition_by=[S.AS_OF],
    )
    bad = [("events", "export", "{}", "missing_user_id", "CustomerID=<empty>", RUN)] * 4
    store.write_table(
        spark.createDataFrame(bad, S.contract(S.QUARANTINE)),
        S.QUARANTINE,
        mode="append",
        run_id=RUN,
        stage="ingest",
    )
    metrics = [(RUN, AS_OF, "genre", "ndcg", 10, None, 0.1234, "all")]
    store.write_table(
        spark.createDataFrame(metrics, S.contract(S.METRICS)),
        S.METRICS,
        mode="append",
        run_id=RUN,
        stage="evaluate",
    )
    store.write_report(segment_plot_name(AS_OF), plot())
    arms = [
        Arm("lapsing", "weekday/morning", "win_back", 900.0, 12.0, AS_OF),
        Arm("lapsing", "weekday/morning", "balanced", 400.0, 3.0, AS_OF),
        Arm("loyal", "weekday/morning", "loyal", 1200.0, 40.0, AS_OF),
        Arm("loyal", "weekend/any", "loyal", 50.0, 1.0, AS_OF),  # another context: not in this report
    ]
    state = state_rows(spark, arms, [], settings.feedback, "fb")
    store.write_table(state, S.STRATEGY_STATE, mode="append", run_id="fb", stage="feedback")
    ctx = RunContext(
        spark,
        store,
        settings,
        AS_OF,
        RUN,
        load_strategies(None),
        context_for(AS_OF, 9, settings.features.hour_bands),
    )
    results = [
        StageResult("ingest", 1.5, "ingest summary <4 rows>"),
        StageResult("ranking", 2.25, "ranking summary"),
    ]
    return Path(write_run_report(ctx, results, ["latest: moved"], 3.75))


def test_report_has_stages_quarantine_mix_plot_and_metrics(report: Path) -> None:
    assert (
        report.name == "report-ingest+ranking.html"
        and report.parent.name == RUN
        and report.parent.parent.name == "_reports"
    )
    page = report.read_text()
    for needle in [
        "genre-spark run report-run",
        "<td>ranking</td><td class=n>2.2</td><td>recommendations: 3 rows</td>",
        "<td>ingest</td><td class=n>1.5</td><td>quarantine: 4 rows</td>",
        "<td>missing_user_id</td><td class=n>4</td>",
        "<td>discovery</td><td class=n>2</td><td class=n>66.7%</td>",
        '<img src="segments_2011-12-09.png"',
        "<td>ndcg</td>",
        "0.1234",
        "ingest summary &lt;4 rows&gt;",  # summaries are escaped
        "latest: moved",
        "Strategy posteriors (weekday/morning)",
        "<td>lapsing</td><td>win_back</td><td class=n>900</td><td class=n>12.0</td>",
        '<img src="strategy_posteriors.png"',
    ]:
        assert needle in page, needle
    assert page.count("<td>loyal</td><td>loyal</td>") == 1
    assert (report.parent / "segments_2011-12-09.png").is_file()  # the folder stands alone
    assert (report.parent / "strategy_posteriors.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_screenshot_shows_the_plot(report: Path, tmp_path: Path) -> None:
    from matplotlib import image

    out = tmp_path / "report.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "screenshot_report.py"), str(report), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pixels = image.imread(str(out))
    assert pixels.shape[1] == 1200
    rgb = pixels[..., :3]
    colourful = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.3  # the scatter colours; tables are grey
    assert colourful.sum() > 5_000, "the segment plot did not render"
