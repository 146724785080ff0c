"""The feedback step's writes (feedback_events + quarantine + strategy_state) and the adaptive chooser."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from deltalake import write_deltalake
from pyspark.sql import SparkSession

from genre_spark import feedback as FB
from genre_spark import schemas as S
from genre_spark.config import FeedbackSourceSettings, LabelRule, Settings
from genre_spark.errors import ConfigError, SchemaMismatchError
from genre_spark.feedback import current_state
from genre_spark.segments import label_segments
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, StrategyBook, allowed_strategies, load_strategies

ROOT = Path(__file__).resolve().parents[2]
SERVED_AS_OF = dt.date(2011, 9, 1)  # a Thursday
CONTEXT = "weekday/any"
RULES = {
    "exclude_returned": True,
    "exclude_recently_bought_days": 0,
    "exclude_recently_bought_categories": [],
    "max_price_ratio": None,
    "campaign_items": [],
    "campaign_slots": 0,
}


def book(adaptive: dict[str, Any] | None) -> StrategyBook:
    strategies = {
        n: {
            "description": n,
            "source_weights": {"als": 1.0},
            "scorer_weights": {},
            "max_per_category": 3,
            "rules": RULES,
        }
        for n in ("base", "good", "poor", "other")
    }
    data: dict[str, Any] = {"strategies": strategies, "selection": [], "default": "base"}
    if adaptive is not None:
        data["adaptive"] = adaptive
    return StrategyBook.model_validate(data)


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2011, 9, day, hour)


RUN_AS_OF = dt.date(2011, 9, 8)  # the run whose feedback stage reads the lists of the week before


def seed_tables(spark: SparkSession, store: TableStore) -> None:
    """Run r1 served u1 [a, b] (segment 0 "loyal", good) and u2 [c, d] (segment 1 "lapsing", poor) as of
    2011-09-01; events hold purchases around it."""
    recs = [
        ("r1", SERVED_AS_OF, "u1", 1, "a", 0.9, 0, "good", ["als"], "x", "v"),
        ("r1", SERVED_AS_OF, "u1", 2, "b", 0.8, 0, "good", ["als"], "x", "v"),
        ("r1", SERVED_AS_OF, "u2", 1, "c", 0.9, 1, "poor", ["als"], "x", "v"),
        ("r1", SERVED_AS_OF, "u2", 2, "d", 0.7, 1, "poor", ["als"], "x", "v"),
    ]
    store.replace_date(
        spark.createDataFrame(recs, S.CONTRACTS[S.RECOMMENDATIONS]),
        S.RECOMMENDATIONS,
        as_of=SERVED_AS_OF,
        run_id="r1",
        stage="ranking",
    )
    segments = [
        ("u1", SERVED_AS_OF, 0, "loyal", 0.0, 0.0, 0.0, "m1"),
        ("u2", SERVED_AS_OF, 1, "lapsing", 0.0, 0.0, 0.0, "m1"),
    ]
    store.replace_date(
        spark.createDataFrame(segments, S.CONTRACTS[S.USER_SEGMENTS]),
        S.USER_SEGMENTS,
        as_of=SERVED_AS_OF,
        run_id="r1",
        stage="segments",
    )

    def event(i: int, user: str, item: str, ts: dt.datetime, kind: str = S.PURCHASE) -> tuple[Any, ...]:
        return (f"e{i}", user, item, kind, 1, 1.0, ts, f"o{i}", "UK", "test", "ingest")

    events = [
        event(1, "u1", "a", at(2)),  # a served item bought in the window
        event(2, "u1", "a", at(3)),  # bought again: still one purchase feedback event
        event(3, "u1", "z", at(3)),  # not served: no feedback (it is not about a list)
        event(4, "u2", "c", at(9)),  # after the 7-day window
        event(5, "u2", "d", at(4), S.RETURN),  # not a purchase
        event(6, "u9", "a", at(2)),  # a user the run never served
        event(7, "u1", "b", at(6)),  # bought after the first feedback run (as of 09-05): a late conversion
    ]
    store.write_table(
        spark.createDataFrame(events, S.CONTRACTS[S.EVENTS]), S.EVENTS, mode="append", run_id="r0"
    )


def state_of(store: TableStore) -> list[tuple[Any, ...]]:
    return sorted(
        (r.segment_label, r.context, r.strategy_id, r.impressions, r.conversions, r.updated_as_of)
        for r in current_state(store.read_table(S.STRATEGY_STATE)).collect()
    )


LOG = """list_run,list_date,customer,sku,action,ts
r1,,u1,a,impression,2011-09-01 08:00:00
r1,,u1,a,click,2011-09-01 08:01:00
,2011-09-01,u1,b,impression,2011-09-01 08:00:00
r1,,u1,a,purchase,2011-09-02 10:00:00
r1,,u1,a,purchase,2011-09-02 10:00:00
r1,,u2,c,impression,2011-09-01 09:00:00
r1,,u2,c,add_to_cart,2011-09-03 09:00:00
r7,,u1,a,click,2011-09-02 10:00:00
,2011-08-01,u1,a,click,2011-09-02 10:00:00
r1,,u1,a,like,2011-09-02 10:00:00
r1,,u1,,click,2011-09-02 10:00:00
r1,,u1,a,click,yesterday
,,u1,a,click,2011-09-02 10:00:00
r1,,u1,a,click,2011-09-08 10:00:00
r1,,u1,a,click,2011-09-02 10:00:00,surplus
"""


def test_feedback_stage_reads_a_serving_log(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    seed_tables(spark, store)
    log = tmp_path / "serving_log.csv"
    log.write_text(LOG)
    source = FeedbackSourceSettings(
        format="csv",
        path=str(log),
        columns={
            S.RUN_ID: "list_run",
            S.AS_OF: "list_date",
            S.USER_ID: "customer",
            S.ITEM_ID: "sku",
            S.EVENT_TYPE: "action",
            S.EVENT_TS: "ts",
        },
    )
    fb = settings.feedback.model_copy(update={"source": source, "window_days": 14})
    report = FB.run_feedback(store, fb, RUN_AS_OF, "fb1", fold_item_case=False)  # lower-case ids here

    rows_in = len(LOG.strip().splitlines()) - 1
    assert (report.feedback_in, report.valid, report.quarantined) == (rows_in, 6, rows_in - 6)
    events = store.read_table(S.FEEDBACK_EVENTS)
    quarantine = store.read_table(S.QUARANTINE)
    assert events.count() + quarantine.count() == rows_in  # every row lands somewhere
    assert sorted((r.user_id, r.item_id, r.event_type) for r in events.collect()) == [
        ("u1", "a", "click"),
        ("u1", "a", "impression"),
        ("u1", "a", "purchase"),
        ("u1", "b", "impression"),  # named by its list's date: run r1's
        ("u2", "c", "add_to_cart"),
        ("u2", "c", "impression"),
    ]
    assert {(r.run_id, r.source, r.recorded_run_id) for r in events.collect()} == {
        ("r1", FB.LOG_SOURCE, "fb1")
    }
    reasons = sorted(r.reason for r in quarantine.collect())
    assert reasons == sorted(
        [
            FB.DUPLICATE,  # the purchase logged twice
            FB.UNKNOWN_LIST,  # run r7
            FB.UNKNOWN_LIST,  # no list served on 2011-08-01
            FB.BAD_EVENT_TYPE,  # like
            "missing_item_id",
            "bad_timestamp",
            "missing_list",  # neither run id nor date
            FB.NOT_YET,  # on the run's date
            "malformed_row",  # one field too many
        ]
    )
    details = {r.detail for r in quarantine.collect()}
    assert "ts=yesterday (expected format yyyy-MM-dd HH:mm:ss)" in details
    assert "run_id=<list of 2011-08-01> (no such list served in the feedback window)" in details

    # the state: per segment label; u1's list (loyal, good) shown 2, 1 bought; u2's (lapsing, poor) 1, 0
    assert state_of(store) == [
        ("lapsing", "weekday/any", "poor", 1.0, 0.0, RUN_AS_OF),
        ("loyal", "weekday/any", "good", 2.0, 1.0, RUN_AS_OF),
    ]
    assert report.arms == 2

    # a rerun of the run id commits nothing
    versions = {t: store.version(t) for t in (S.FEEDBACK_EVENTS, S.QUARANTINE, S.STRATEGY_STATE)}
    again = FB.run_feedback(store, fb, RUN_AS_OF, "fb1", fold_item_case=False)
    assert all(w.skipped for w in again.writes)
    assert (again.valid, again.quarantined) == (report.valid, report.quarantined)
    assert {t: store.version(t) for t in versions} == versions

    # the next run reads the same log: every event is already counted, the one of 2011-09-08 is due now
    later = FB.run_feedback(store, fb, dt.date(2011, 9, 9), "fb2", fold_item_case=False)
    assert (later.valid, later.arms) == (1, 0)  # the click converts nothing
    assert store.read_table(S.FEEDBACK_EVENTS).count() == 7

    # the chooser reads the state known on its date only
    assert FB.load_arms(store, dt.date(2011, 9, 7), fb) == []
    assert {(a.segment, a.strategy_id) for a in FB.load_arms(store, RUN_AS_OF, fb)} == {
        ("lapsing", "poor"),
        ("loyal", "good"),
    }


def test_feedback_stage_derives_purchases_and_counts_late_ones(
    spark: SparkSession, store: TableStore, settings: Settings
) -> None:
    seed_tables(spark, store)
    fb = settings.feedback
    assert fb.source is None
    first = FB.run_feedback(store, fb, dt.date(2011, 9, 5), "fb1")
    # 4 impressions + the purchase of (u1, a); u9's purchase and the unlisted z are not about a list
    assert (first.feedback_in, first.valid, first.quarantined) == (5, 5, 0)
    assert state_of(store) == [
        ("lapsing", "weekday/any", "poor", 2.0, 0.0, dt.date(2011, 9, 5)),
        ("loyal", "weekday/any", "good", 2.0, 1.0, dt.date(2011, 9, 5)),
    ]
    # three days later: only (u1, b)'s purchase of 09-06 is new; the impressions are not derived again
    second = FB.run_feedback(store, fb, RUN_AS_OF, "fb2")
    assert (second.feedback_in, second.valid, second.quarantined, second.arms) == (1, 1, 0, 1)
    half = 0.5 ** (3 / fb.half_life_days)
    loyal = next(a for a in FB.load_arms(store, RUN_AS_OF, fb) if a.segment == "loyal")
    # both shown items are bought now: conversions never exceed the (decayed) impressions
    assert (loyal.impressions, loyal.conversions) == pytest.approx((2 * half, 2 * half))
    # no lists in the window, no log: nothing to do, nothing written
    assert FB.run_feedback(store, fb, dt.date(2011, 10, 1), "fb3").writes == ()


def test_state_survives_a_refit_that_renumbers_segments(
    spark: SparkSession, store: TableStore, settings: Settings
) -> None:
    seed_tables(spark, store)
    b = book(
        {"allowed": {"loyal": ["good", "poor"], "lapsing": ["good", "poor"]}, "default_allowed": ["base"]}
    )
    fb = settings.feedback.model_copy(update={"exploration_floor": 0.0})
    # the loyal segment learned that good converts (strategy_state rows keyed by its label)
    known = [
        FB.Arm("loyal", "weekday/any", "good", 1000.0, 80.0, RUN_AS_OF),
        FB.Arm("loyal", "weekday/any", "poor", 1000.0, 5.0, RUN_AS_OF),
        FB.Arm("lapsing", "weekday/any", "good", 1000.0, 2.0, RUN_AS_OF),
        FB.Arm("lapsing", "weekday/any", "poor", 1000.0, 40.0, RUN_AS_OF),
    ]
    store.write_table(
        FB.state_rows(spark, known, [], fb, "fb1"), S.STRATEGY_STATE, mode="append", run_id="fb1"
    )
    ctx = Context(RUN_AS_OF, None)
    before = FB.adaptive_chooser_from_store(store, b, fb, ctx)
    assert (before(0, "loyal"), before(1, "lapsing")) == ("good", "poor")
    # a refit swaps the ids: each label keeps what it learned
    after = FB.adaptive_chooser_from_store(store, b, fb, ctx)
    assert (after(1, "loyal"), after(0, "lapsing")) == ("good", "poor")
    assert (after(7, "loyal"), after(3, "lapsing")) == ("good", "poor")


def test_repeated_labels_are_numbered_by_size_not_id() -> None:
    z = {0: {"recency": 2.0}, 1: {"recency": 2.0}, 2: {"recency": -1.0}}
    rules = [LabelRule(label="lapsing", when={"recency": (1.0, None)})]
    sizes = {0: 10, 1: 50, 2: 5}
    assert label_segments(z, rules, "regulars", sizes) == {0: "lapsing (2)", 1: "lapsing", 2: "regulars"}
    # the same segments under other ids get the same labels
    renumbered = {5: z[1], 6: z[0], 7: z[2]}
    assert label_segments(renumbered, rules, "regulars", {5: 50, 6: 10, 7: 5}) == {
        5: "lapsing",
        6: "lapsing (2)",
        7: "regulars",
    }


def test_adaptive_chooser_prefers_the_arm_that_converts(settings: Settings) -> None:
    b = book({"allowed": {"loyal": ["good", "poor"]}, "default_allowed": ["base"]})
    fb = settings.feedback.model_copy(update={"exploration_floor": 0.05})
    arms = [
        FB.Arm("loyal", CONTEXT, "good", 1000.0, 150.0, SERVED_AS_OF),
        FB.Arm("loyal", CONTEXT, "poor", 1000.0, 30.0, SERVED_AS_OF),
    ]
    ctx = Context(SERVED_AS_OF, None)
    picks = [
        FB.adaptive_chooser(b, arms, fb.model_copy(update={"seed": seed}), ctx)(0, "loyal")
        for seed in range(200)
    ]
    assert picks.count("good") / len(picks) > 0.9
    assert set(picks) <= {"good", "poor"}
    # another segment (not listed): its default list, whatever the state says
    assert FB.adaptive_chooser(b, arms, fb, ctx)(3, "new") == "base"
    # the same config and date pick the same, in whatever order segments are asked
    forward = FB.adaptive_chooser(b, arms, fb, ctx)
    backward = FB.adaptive_chooser(b, arms, fb, ctx)
    picked = {s: forward(s, label) for s, label in ((0, "loyal"), (1, "x"), (2, "y"))}
    assert {s: backward(s, label) for s, label in ((2, "y"), (1, "x"), (0, "loyal"))} == picked


def test_adaptive_chooser_without_state_samples_the_prior_among_the_allowed(settings: Settings) -> None:
    b = book({"allowed": {"loyal": ["good", "poor"], 7: ["other"]}, "default_allowed": ["base", "good"]})
    ctx = Context(SERVED_AS_OF, None)
    picks = {
        FB.adaptive_chooser(b, [], settings.feedback.model_copy(update={"seed": seed}), ctx)(0, "loyal")
        for seed in range(100)
    }
    assert picks == {"good", "poor"}
    assert FB.adaptive_chooser(b, [], settings.feedback, ctx)(7, "loyal") == "other"  # id wins
    # no `adaptive` section: every strategy of the book is allowed
    open_book = book(None)
    assert allowed_strategies(open_book, 0, "loyal") == ["base", "good", "poor", "other"]


@pytest.mark.parametrize(
    ("adaptive", "fragment"),
    [
        (
            {"allowed": {"lapsing": ["win_back", "nope"]}, "default_allowed": ["balanced"]},
            "adaptive.allowed.lapsing",
        ),
        (
            {"allowed": {}, "default_allowed": ["nope"]},
            "adaptive.default_allowed names unknown strategy ['nope']",
        ),
        ({"allowed": {3: []}, "default_allowed": ["balanced"]}, "adaptive.allowed.3 allows no strategy"),
        ({"allowed": {}, "default_alowed": ["balanced"]}, "adaptive.default_alowed"),
    ],
    ids=["unknown-in-allowed", "unknown-in-default", "empty", "typo-key"],
)
def test_bad_adaptive_section_names_the_key(tmp_path: Path, adaptive: dict[str, Any], fragment: str) -> None:
    data = yaml.safe_load((ROOT / "conf" / "strategies.yaml").read_text())
    data["adaptive"] = adaptive
    path = tmp_path / "strategies.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_strategies(path)
    assert fragment in str(err.value), str(err.value)


def test_shipped_adaptive_section() -> None:
    shipped = load_strategies()
    assert shipped.adaptive is not None
    assert "win_back" in allowed_strategies(shipped, 0, "lapsing")
    assert allowed_strategies(shipped, 0, "regulars") == shipped.adaptive.default_allowed


def test_replay_policies(settings: Settings) -> None:
    from genre_spark.replay import fixed_policies

    shipped = load_strategies()
    assert fixed_policies(shipped, settings) == ["win_back", "balanced", "seasonal", "loyal", "discovery"]
    assert fixed_policies(book(None), settings) == ["base", "good", "poor", "other"]
    pick = settings.model_copy(update={"replay": settings.replay.model_copy(update={"strategies": ["good"]})})
    assert fixed_policies(book(None), pick) == ["good"]
    typo = settings.model_copy(update={"replay": settings.replay.model_copy(update={"strategies": ["godo"]})})
    with pytest.raises(ConfigError, match=r"replay.strategies names unknown strategy \['godo'\]"):
        fixed_policies(book(None), typo)


def test_replay_summary_compares_the_later_weeks() -> None:
    from genre_spark.replay import ADAPTIVE, PolicyWeek, ReplayReport

    def week(w: int, policy: str, shown: int, bought: int) -> PolicyWeek:
        return PolicyWeek(
            w, SERVED_AS_OF + dt.timedelta(days=7 * w), policy, 10, shown, bought, 1, 0.1, policy
        )

    rows = [
        week(0, ADAPTIVE, 100, 0),  # learning: left out of the later half
        week(0, "a", 100, 2),
        week(0, "b", 100, 1),
        week(1, ADAPTIVE, 100, 3),
        week(1, "a", 100, 4),
        week(1, "b", 100, 2),
    ]
    report = ReplayReport(SERVED_AS_OF, 2, 10, tuple(rows), (), ())
    assert report.conversion(ADAPTIVE) == pytest.approx(3 / 200)
    assert report.conversion("a", 1) == pytest.approx(0.04)
    summary = report.summary()
    assert "| adaptive | 1.500% | 3.000% |" in summary
    assert (
        "weeks 1-1: adaptive 3.000%, mean of the fixed strategies 3.000% (+0.0%), "
        "best fixed (a) 4.000% (-25.0%)" in summary
    )


def test_a_log_folder_is_read_file_by_file(
    spark: SparkSession, store: TableStore, settings: Settings, tmp_path: Path
) -> None:
    seed_tables(spark, store)
    folder = tmp_path / "log"
    folder.mkdir()
    header = "list_run,customer,sku,action,ts\n"
    (folder / "day1.csv").write_text(header + "r1,u1,a,impression,2011-09-01 08:00:00\n")
    columns = {S.RUN_ID: "list_run", S.USER_ID: "customer", S.ITEM_ID: "sku", S.EVENT_TYPE: "action"}
    source = FeedbackSourceSettings(format="csv", path=f"{folder}/", columns={**columns, S.EVENT_TS: "ts"})
    fb = settings.feedback.model_copy(update={"source": source})
    first = FB.run_feedback(store, fb, dt.date(2011, 9, 2), "fb1", fold_item_case=False)
    assert (first.feedback_in, first.valid) == (1, 1)
    # the next day's file only; a run with no new file writes nothing
    (folder / "day2.csv").write_text(header + "r1,u1,a,purchase,2011-09-02 09:00:00\n")
    second = FB.run_feedback(store, fb, dt.date(2011, 9, 3), "fb2", fold_item_case=False)
    assert (second.feedback_in, second.valid, second.arms) == (1, 1, 1)
    assert FB.run_feedback(store, fb, dt.date(2011, 9, 4), "fb3").writes == ()
    files = {(r.source, Path(r.path).name, r.run_id) for r in store.read_table(S.INGESTED_FILES).collect()}
    assert files == {(FB.LOG_SOURCE, "day1.csv", "fb1"), (FB.LOG_SOURCE, "day2.csv", "fb2")}
    decayed = 0.5 ** (1 / fb.half_life_days)  # the impression of the day before, now bought
    assert state_of(store) == [("loyal", "weekday/any", "good", decayed, decayed, dt.date(2011, 9, 3))]


def test_a_state_table_of_the_older_shape_is_named(
    spark: SparkSession, store: TableStore, settings: Settings
) -> None:
    """strategy_state keyed by segment id (before the feedback stage): the stage stops with the exit-4 error
    naming the table, not a crash."""
    seed_tables(spark, store)
    old = spark.createDataFrame(
        [(0, "weekday/any", "good", 2.0, 20.0, 1.0, 0.0, SERVED_AS_OF, "r")],
        "segment_id int, context string, strategy_id string, alpha double, beta double, impressions double, "
        "conversions double, updated_as_of date, run_id string",
    )
    write_deltalake(store.table_path(S.STRATEGY_STATE), old.toPandas())
    with pytest.raises(SchemaMismatchError, match="strategy_state") as err:
        FB.run_feedback(store, settings.feedback, RUN_AS_OF, "fb1")
    assert err.value.exit_code == 4 and "segment_label" in str(err.value)
