"""The feedback step's writes (feedback_events + quarantine + strategy_state) and the adaptive chooser."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from genre_spark import feedback as FB
from genre_spark import schemas as S
from genre_spark.config import Settings
from genre_spark.errors import ConfigError
from genre_spark.storage import TableStore
from genre_spark.strategy import StrategyBook, allowed_strategies, load_strategies

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


def seed_tables(spark: SparkSession, store: TableStore) -> None:
    """Run r1 served u1 [a, b] (segment 0, good) and u2 [c, d] (segment 1, poor) as of 2011-09-01."""
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

    def event(i: int, user: str, item: str, ts: dt.datetime, kind: str = S.PURCHASE) -> tuple[Any, ...]:
        return (f"e{i}", user, item, kind, 1, 1.0, ts, f"o{i}", "UK", "test", "ingest")

    events = [
        event(1, "u1", "a", at(2)),  # a served item bought in the window
        event(2, "u1", "a", at(3)),  # bought again: still one purchase feedback event
        event(3, "u1", "z", at(3)),  # not served: no feedback (it is not about a list)
        event(4, "u2", "c", at(9)),  # after the 7-day window
        event(5, "u2", "d", at(4), S.RETURN),  # not a purchase
        event(6, "u9", "a", at(2)),  # a user the run never served
    ]
    store.write_table(
        spark.createDataFrame(events, S.CONTRACTS[S.EVENTS]), S.EVENTS, mode="append", run_id="r0"
    )


def test_feedback_step_writes_events_quarantine_and_state(
    spark: SparkSession, store: TableStore, settings: Settings
) -> None:
    seed_tables(spark, store)
    incoming = spark.createDataFrame(
        [
            ("r1", "u2", "c", S.CLICK, at(2)),  # valid: a click on a served item
            ("r1", "u9", "a", S.CLICK, at(2)),  # unknown user
            ("r1", "u1", "z", S.CLICK, at(3)),  # not on u1's list
            ("r1", "u1", "b", "like", at(3)),  # not a feedback event type
        ],
        S.CONTRACTS[S.FEEDBACK_EVENTS],
    )
    fb = settings.feedback.model_copy(update={"prior_alpha": 1.0, "prior_beta": 19.0})
    report = FB.run_feedback(store, fb, SERVED_AS_OF, 7, "fb1", context=CONTEXT, incoming=incoming)

    # 4 impressions + 1 purchase derived from the lists, 4 incoming rows
    assert (report.feedback_in, report.valid, report.quarantined) == (9, 6, 3)
    events = store.read_table(S.FEEDBACK_EVENTS)
    quarantine = store.read_table(S.QUARANTINE)
    assert events.count() + quarantine.count() == report.feedback_in
    kinds = sorted(tuple(r) for r in events.groupBy(S.EVENT_TYPE).count().collect())
    assert kinds == [(S.CLICK, 1), (S.IMPRESSION, 4), (S.PURCHASE, 1)]
    assert sorted(r.reason for r in quarantine.collect()) == [
        FB.BAD_EVENT_TYPE,
        FB.UNKNOWN_USER,
        FB.UNSERVED_ITEM,
    ]
    assert {(r.table, r.run_id) for r in quarantine.collect()} == {(S.FEEDBACK_EVENTS, "fb1")}

    state = sorted(
        (r.segment_id, r.strategy_id, r.impressions, r.conversions, r.alpha, r.beta, r.context)
        for r in store.read_table(S.STRATEGY_STATE).collect()
    )
    assert state == [(0, "good", 2.0, 1.0, 2.0, 20.0, CONTEXT), (1, "poor", 2.0, 0.0, 1.0, 21.0, CONTEXT)]
    assert report.arms == 2
    assert {r.updated_as_of for r in store.read_table(S.STRATEGY_STATE).collect()} == {dt.date(2011, 9, 8)}

    # a rerun of the run id commits nothing
    versions = {t: store.version(t) for t in (S.FEEDBACK_EVENTS, S.QUARANTINE, S.STRATEGY_STATE)}
    again = FB.run_feedback(store, fb, SERVED_AS_OF, 7, "fb1", context=CONTEXT, incoming=incoming)
    assert all(w.skipped for w in again.writes)
    assert {t: store.version(t) for t in versions} == versions
    assert store.read_table(S.FEEDBACK_EVENTS).count() == 6

    # the chooser reads the state known on its date only
    assert FB.load_arms(store, CONTEXT, dt.date(2011, 9, 7)) == []
    arms = FB.load_arms(store, CONTEXT, dt.date(2011, 9, 8))
    assert sorted((a.segment_id, a.strategy_id, a.alpha, a.beta) for a in arms) == [
        (0, "good", 2.0, 20.0),
        (1, "poor", 1.0, 21.0),
    ]
    assert FB.load_arms(store, "weekend/any", dt.date(2011, 9, 8)) == []


def test_adaptive_chooser_prefers_the_arm_that_converts(settings: Settings) -> None:
    b = book({"allowed": {"loyal": ["good", "poor"]}, "default_allowed": ["base"]})
    fb = settings.feedback.model_copy(update={"exploration_floor": 0.05})
    arms = [FB.Arm(0, "good", 1 + 150.0, 19 + 850.0), FB.Arm(0, "poor", 1 + 30.0, 19 + 970.0)]
    picks = [
        FB.adaptive_chooser(b, arms, fb.model_copy(update={"seed": seed}), SERVED_AS_OF)(0, "loyal")
        for seed in range(200)
    ]
    assert picks.count("good") / len(picks) > 0.9
    assert set(picks) <= {"good", "poor"}
    # another segment (not listed): its default list, whatever the state says
    assert FB.adaptive_chooser(b, arms, fb, SERVED_AS_OF)(3, "new") == "base"
    # the same config and date pick the same, in whatever order segments are asked
    forward = FB.adaptive_chooser(b, arms, fb, SERVED_AS_OF)
    backward = FB.adaptive_chooser(b, arms, fb, SERVED_AS_OF)
    picked = {s: forward(s, "loyal") for s in (0, 1, 2)}
    assert {s: backward(s, "loyal") for s in (2, 1, 0)} == picked


def test_adaptive_chooser_without_state_samples_the_prior_among_the_allowed(settings: Settings) -> None:
    b = book({"allowed": {"loyal": ["good", "poor"], 7: ["other"]}, "default_allowed": ["base", "good"]})
    picks = {
        FB.adaptive_chooser(b, [], settings.feedback.model_copy(update={"seed": seed}), SERVED_AS_OF)(
            0, "loyal"
        )
        for seed in range(100)
    }
    assert picks == {"good", "poor"}
    assert FB.adaptive_chooser(b, [], settings.feedback, SERVED_AS_OF)(7, "loyal") == "other"  # id wins
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
