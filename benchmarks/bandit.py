"""The adaptive policy's settings, replayed offline on the outcomes of a real replay.

A `genre-spark replay` writes every fixed strategy's lists for every week (`replay_lists`). Since a segment
served strategy a gets exactly the lists the fixed policy a made for its users, the conversion the adaptive
policy would have had with any choice of strategies is known: per (week, segment label, strategy), the served
items and those bought in the week. This script collects that table once (one Spark job; cached as JSON),
then replays the adaptive policy on the driver with the product's own functions (`thompson_pick`,
`update_arms`, `prior_mean`, decay by days) for several settings and seeds, against the fixed strategies:
seconds per setting instead of ~40 minutes per replay.

    python benchmarks/bandit.py --warehouse WAREHOUSE   # collect the table from a replay's warehouse, then
    python benchmarks/bandit.py --seeds 200 --set prior_strength=1000,exploration_floor=0.01 ...

Writes benchmarks/results/bandit.md (and bandit_outcomes.json, the table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
from pathlib import Path

from genre_spark.config import FeedbackSettings, load_settings
from genre_spark.feedback import Arm, segment_rng, thompson_pick, update_arms
from genre_spark.strategy import Context, allowed_strategies, load_strategies, select_strategy

RESULTS = Path(__file__).resolve().parent / "results"
CONTEXT = "weekday/any"  # the replay's dates are all Thursdays without an hour band

Outcomes = dict[tuple[str, str, str], tuple[int, int]]  # (as_of, segment label, strategy) -> (shown, bought)


def collect(warehouse: str, window_days: int) -> Outcomes:
    """Per week, segment label and fixed strategy: served items and those bought in the week (Spark)."""
    from pyspark.sql import functions as F

    from genre_spark import schemas as S
    from genre_spark.history import purchases_between
    from genre_spark.session import build_spark_session
    from genre_spark.storage import EmbeddedDeltaStore

    settings = load_settings([Path("conf/local.yaml")], [f"storage.warehouse={warehouse}"])
    spark = build_spark_session(settings.spark)
    store = EmbeddedDeltaStore(spark, warehouse)
    lists = store.read_table(S.REPLAY_LISTS).where(F.col(S.POLICY) != "adaptive")
    days = sorted(r[0] for r in lists.select(S.AS_OF).distinct().collect())
    labels = store.read_table(S.USER_SEGMENTS).select(S.AS_OF, S.USER_ID, S.SEGMENT_LABEL)
    events, items = store.read_table(S.EVENTS), store.read_table(S.ITEMS)
    table: Outcomes = {}
    for day in days:
        bought = (
            purchases_between(events, items, day, day + dt.timedelta(days=window_days))
            .select(S.USER_ID, S.ITEM_ID)
            .distinct()
            .withColumn("_bought", F.lit(1))
        )
        rows = (
            lists.where(F.col(S.AS_OF) == F.lit(day))
            .join(labels, [S.AS_OF, S.USER_ID])
            .join(bought, [S.USER_ID, S.ITEM_ID], "left")
            .groupBy(S.SEGMENT_LABEL, S.POLICY)
            .agg(F.count(F.lit(1)).alias("shown"), F.sum(F.coalesce("_bought", F.lit(0))).alias("bought"))
            .collect()  # segments x strategies
        )
        for r in rows:
            table[(str(day), r[S.SEGMENT_LABEL], r[S.POLICY])] = (int(r["shown"]), int(r["bought"]))
    spark.stop()
    return table


def simulate(outcomes: Outcomes, settings: FeedbackSettings, seed: int) -> list[tuple[int, int]]:
    """The adaptive policy's (shown, bought) per week: Thompson per segment from the state so far, the week's
    outcome of the picked strategy fed back at the next week's date."""
    book = load_strategies()
    settings = settings.model_copy(update={"seed": seed})
    days = sorted({d for d, _, _ in outcomes})
    arms: dict[tuple[str, str], Arm] = {}
    weeks = []
    for i, day_text in enumerate(days):
        day = dt.date.fromisoformat(day_text)
        known = [a.decayed(day, settings.half_life_days) for a in arms.values()]
        shown = bought = 0
        feedback = []
        for segment in sorted({s for d, s, _ in outcomes if d == day_text}):
            allowed = [a for a in allowed_strategies(book, -1, segment) if (day_text, segment, a) in outcomes]
            pick = thompson_pick(known, segment, allowed, settings, segment_rng(settings, day, segment))
            n, k = outcomes[(day_text, segment, pick)]
            shown, bought = shown + n, bought + k
            feedback.append((segment, CONTEXT, pick, float(n), float(k)))
        weeks.append((shown, bought))
        if i + 1 < len(days):  # the next run's feedback stage
            nxt = dt.date.fromisoformat(days[i + 1])
            decayed = [a.decayed(nxt, settings.half_life_days) for a in arms.values()]
            for arm in update_arms(decayed, feedback, nxt):
                arms[(arm.segment, arm.strategy_id)] = arm
    return weeks


def fixed(outcomes: Outcomes, days: list[str], strategy: str) -> float:
    cells = [v for (d, _, s), v in outcomes.items() if d in days and s == strategy]
    return sum(b for _, b in cells) / sum(n for n, _ in cells)


def by_rules(outcomes: Outcomes, days: list[str]) -> float:
    """The book's selection rules (what `run` serves with feedback.adaptive off), per segment and week."""
    book = load_strategies()
    cells = []
    for day in days:
        for segment in sorted({s for d, s, _ in outcomes if d == day}):
            pick = select_strategy(book, -1, segment, Context(dt.date.fromisoformat(day), None))
            cells.append(outcomes[(day, segment, pick)])
    return sum(b for _, b in cells) / sum(n for n, _ in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", help="a replay's warehouse (to collect the outcomes table)")
    parser.add_argument("--window-days", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="variants",
        metavar="K=V[,K=V]",
        help="a variant of the feedback settings (repeatable); the shipped default always runs",
    )
    args = parser.parse_args()
    cache = RESULTS / "bandit_outcomes.json"
    if args.warehouse:
        outcomes = collect(args.warehouse, args.window_days)
        cache.write_text(json.dumps({"|".join(k): v for k, v in sorted(outcomes.items())}, indent=0))
    else:
        outcomes = {tuple(k.split("|")): tuple(v) for k, v in json.loads(cache.read_text()).items()}  # type: ignore[misc]
    days = sorted({d for d, _, _ in outcomes})
    later = days[len(days) // 2 :]
    strategies = sorted({s for _, _, s in outcomes})
    fixed_later = {s: fixed(outcomes, later, s) for s in strategies}
    best = max(fixed_later, key=lambda s: fixed_later[s])
    mean = statistics.fmean(fixed_later.values())
    lines = [
        "# The adaptive policy replayed offline on a real replay's outcomes",
        "",
        f"Weeks {days[0]} .. {days[-1]} ({len(days)}); later half from {later[0]}. Fixed strategies, item",
        "conversion in the later half: "
        + ", ".join(f"{s} {fixed_later[s]:.3%}" for s in strategies)
        + f"; mean {mean:.3%}, best {best}. The book's selection rules (feedback.adaptive off): "
        + f"{by_rules(outcomes, later):.3%}.",
        "",
        f"| feedback settings | adaptive, later half (mean of {args.seeds} seeds) | 10th-90th pct | vs mean "
        f"of fixed | vs best ({best}) | seeds >= mean | seeds within 10% of best |",
        "|---|---|---|---|---|---|---|",
    ]
    base = load_settings([], []).feedback
    for variant in ["", *args.variants]:
        updates = dict(kv.split("=", 1) for kv in variant.split(",") if kv)
        settings = base.model_copy(update={k.removeprefix("feedback."): float(v) for k, v in updates.items()})
        rates = []
        for seed in range(args.seeds):
            weeks = simulate(outcomes, settings, seed)
            mine = weeks[len(days) // 2 :]
            rates.append(sum(b for _, b in mine) / sum(n for n, _ in mine))
        deciles = statistics.quantiles(rates, n=10)
        avg = statistics.fmean(rates)
        lines.append(
            f"| {variant or 'shipped default'} | {avg:.3%} | {deciles[0]:.3%} - {deciles[-1]:.3%} | "
            f"{avg / mean - 1:+.1%} | {avg / fixed_later[best] - 1:+.1%} | "
            f"{sum(r >= mean for r in rates) / len(rates):.0%} | "
            f"{sum(r >= 0.9 * fixed_later[best] for r in rates) / len(rates):.0%} |"
        )
        print(lines[-1], flush=True)
    (RESULTS / "bandit.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
