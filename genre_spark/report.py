"""The run report: a small HTML page per run beside the tables, ``<warehouse>/_reports/<run id>/report.html``
(``report-<stages>.html`` when a run of some stages only, a bundle task or a stage notebook, wrote it).

Built generically from the run's :class:`StageResult` list and the store's write log (every stage, also
ones added later, shows up with its time, summary and the rows it wrote), plus what the tables say about
the run: quarantine reasons, the strategy mix of the lists, the segment plot, the strategy posteriors per
segment (``strategy_state`` as known on the run's date), and the ``metrics`` rows of the run when evaluation
wrote any. Only aggregates bounded by config reach the driver.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from collections.abc import Sequence

import numpy as np
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.feedback import Arm, beta_params, context_key, load_arms, prior_mean
from genre_spark.pipeline import STAGES, RunContext, StageResult
from genre_spark.segments import segment_plot_name
from genre_spark.storage import WriteResult

MAX_METRIC_ROWS = 300


def write_run_report(
    ctx: RunContext, results: Sequence[StageResult], notes: Sequence[str], seconds: float
) -> str:
    """Write the report through the warehouse's filesystem (local or remote); its path or URI."""
    store = ctx.store
    ran = [r.stage for r in results]
    # the whole run: report.html; part of it (a bundle task, a stage notebook): report-<stages>.html
    name = "report.html" if ran == list(STAGES) else f"report-{'+'.join(ran) or 'none'}.html"
    parts = [
        f"<h1>genre-spark run {_e(ctx.run_id)}</h1>",
        f"<p>as of <b>{ctx.as_of}</b> &middot; warehouse <code>{_e(store.warehouse)}</code> "
        f"({_e(store.backend)} Delta) &middot; {seconds:.1f} s &middot; written "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</p>",
        _stages_table(ctx, results),
        _quarantine_table(ctx),
        _strategy_mix(ctx),
        _segment_plot(ctx),
        _posteriors(ctx),
        _metrics_table(ctx),
        "<h2>After the stages</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>",
        "<h2>Stage summaries</h2>"
        + "".join(f"<h3>{_e(r.stage)}</h3><pre>{_e(r.summary)}</pre>" for r in results),
    ]
    page = _PAGE.format(title=_e(f"genre-spark {ctx.run_id}"), body="\n".join(p for p in parts if p))
    return store.write_report(f"{ctx.run_id}/{name}", page.encode("utf-8"))


def _stages_table(ctx: RunContext, results: Sequence[StageResult]) -> str:
    rows = []
    for r in results:
        out = ", ".join(f"{w.table}: {_rows(w)}" for stage, w in ctx.store.write_log if stage == r.stage)
        rows.append([r.stage, _Number(f"{r.seconds:.1f}"), out or "-"])
    return _table("Stages", ["stage", "seconds", "rows out (per table)"], rows)


def _quarantine_table(ctx: RunContext) -> str:
    if not ctx.store.exists(S.QUARANTINE):
        return ""
    counts = (
        ctx.store.read_table(S.QUARANTINE)
        .filter(F.col(S.RUN_ID) == ctx.run_id)
        .groupBy("table", S.SOURCE, "reason")
        .count()
        .orderBy(F.desc("count"))
        .collect()  # tables x sources x rule ids: small
    )
    if not counts:
        return "<h2>Quarantine</h2><p>no row quarantined by this run</p>"
    rows = [[r["table"], r[S.SOURCE], r["reason"], _Number(f"{r['count']:,}")] for r in counts]
    return _table("Quarantine", ["table", "source", "reason", "rows"], rows)


def _strategy_mix(ctx: RunContext) -> str:
    if not ctx.store.exists(S.RECOMMENDATIONS):
        return ""
    mix = (
        ctx.store.read_table(S.RECOMMENDATIONS)
        .filter((F.col(S.AS_OF) == F.lit(ctx.as_of)) & (F.col(S.RUN_ID) == ctx.run_id))
        .groupBy(S.STRATEGY_ID)
        .agg(F.countDistinct(S.USER_ID).alias("users"))
        .orderBy(F.desc("users"))
        .collect()  # one row per strategy
    )
    if not mix:
        return ""
    total = sum(r["users"] for r in mix)
    rows = [
        [r[S.STRATEGY_ID], _Number(f"{r['users']:,}"), _Number(f"{100 * r['users'] / total:.1f}%")]
        for r in mix
    ]
    return _table("Strategy mix", ["strategy", "users", "share"], rows)


def _segment_plot(ctx: RunContext) -> str:
    name = segment_plot_name(ctx.as_of)
    png = ctx.store.read_report(name)
    if png is None:
        return ""
    ctx.store.write_report(f"{ctx.run_id}/{name}", png)  # the report folder stands alone
    return (
        f'<h2>Segments</h2><img src="{_e(name)}" alt="segments on PC1/PC2 and silhouette by k" width="100%">'
    )


def _posteriors(ctx: RunContext) -> str:
    """Each segment's strategies in the run's context: evidence, posterior mean and its 90% interval (a
    table and a small plot); nothing before the first feedback."""
    settings = ctx.settings.feedback
    context = context_key(ctx.context)
    arms = [a for a in load_arms(ctx.store, ctx.as_of, settings) if a.context == context]
    if not arms:
        return ""
    rng = np.random.default_rng(settings.seed)
    rows, stats = [], []
    for arm in sorted(arms, key=lambda a: (a.segment, a.strategy_id)):
        alpha, beta = beta_params(
            arm.impressions,
            arm.conversions,
            prior_mean(arms, arm.segment, arm.strategy_id, settings),
            settings,
        )
        low, high = np.quantile(rng.beta(alpha, beta, 4000), [0.05, 0.95])
        mean = alpha / (alpha + beta)
        stats.append((arm, mean, low, high))
        rows.append(
            [
                arm.segment,
                arm.strategy_id,
                _Number(f"{arm.impressions:,.0f}"),
                _Number(f"{arm.conversions:,.1f}"),
                _Number(f"{mean:.2%}"),
                _Number(f"{low:.2%} - {high:.2%}"),
            ]
        )
    name = "strategy_posteriors.png"
    ctx.store.write_report(f"{ctx.run_id}/{name}", _posterior_plot(stats, context))
    header = ["segment", "strategy", "impressions (decayed)", "conversions", "posterior mean", "90% interval"]
    return _table(f"Strategy posteriors ({context})", header, rows) + (
        f'<img src="{_e(name)}" alt="conversion posterior per segment and strategy" width="80%">'
    )


def _posterior_plot(stats: Sequence[tuple[Arm, float, float, float]], context: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segments = sorted({a.segment for a, *_ in stats})
    fig, axes = plt.subplots(1, len(segments), figsize=(3.2 * len(segments), 2.8), squeeze=False)
    for ax, segment in zip(axes[0], segments, strict=True):
        mine = [s for s in stats if s[0].segment == segment]
        y = np.arange(len(mine))
        means = np.array([m for _, m, _, _ in mine])
        errors = np.array([[m - lo for _, m, lo, _ in mine], [hi - m for _, m, _, hi in mine]])
        ax.errorbar(100 * means, y, xerr=100 * errors, fmt="o", capsize=3)
        ax.set_yticks(y, [a.strategy_id for a, *_ in mine], fontsize=8)
        ax.set_title(segment, fontsize=9)
        ax.set_xlabel("% of served items bought", fontsize=8)
    fig.suptitle(f"strategy posteriors, {context} (mean, 90% interval)", fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    return png.getvalue()


def _metrics_table(ctx: RunContext) -> str:
    """Evaluation's ``metrics`` rows of this run (any horizon: run id ``<run>-h<days>``), when it wrote any
    (the table lands with evaluation)."""
    if not ctx.store.exists(S.METRICS):
        return ""
    rows = (
        ctx.store.read_table(S.METRICS)
        .filter(F.col(S.RUN_ID).startswith(ctx.run_id))
        .orderBy("model", "metric", "k")
        .limit(MAX_METRIC_ROWS)
        .collect()  # at most MAX_METRIC_ROWS
    )
    if not rows:
        return ""
    columns = [c for c in rows[0].asDict() if c != S.AS_OF]
    return _table("Metrics", columns, [[_fmt(r[c]) for c in columns] for r in rows])


class _Number(str):
    """A cell shown right-aligned."""


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An <h2> title and an HTML table, every cell escaped."""

    def cell(value: object) -> str:
        return f"<td class=n>{_e(value)}</td>" if isinstance(value, _Number) else f"<td>{_e(value)}</td>"

    head = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<h2>{_e(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _rows(write: WriteResult) -> str:
    if write.skipped:
        return "unchanged (run already committed)"
    return "written" if write.rows is None else f"{write.rows:,} rows"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _e(text: object) -> str:
    return html.escape(str(text))


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 12px; }}
</style></head>
<body>
{body}
</body></html>
"""
