"""Feedback events from purchases, quarantine of feedback that does not count, arm outcomes, decayed evidence
with pooled priors, Thompson sampling."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import feedback as FB
from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings, Settings
from genre_spark.errors import ConfigError
from genre_spark.strategy import Context

START = dt.date(2011, 9, 1)
END = dt.date(2011, 9, 8)
WEEKDAY = "weekday/any"
FEEDBACK = "run_id string, user_id string, item_id string, event_type string, event_ts timestamp"


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2011, 9, day, hour)


def served(spark: SparkSession) -> DataFrame:
    """Run r1 served u1 [a, b] and u2 [c] with strategy s to segment "loyal", u3 [a, d] with t to "lapsing",
    all as of START on a weekday, no hour band."""
    rows = [
        ("r1", START, "u1", 1, "a", "loyal", "s"),
        ("r1", START, "u1", 2, "b", "loyal", "s"),
        ("r1", START, "u2", 1, "c", "loyal", "s"),
        ("r1", START, "u3", 1, "a", "lapsing", "t"),
        ("r1", START, "u3", 2, "d", "lapsing", "t"),
    ]
    schema = (
        "run_id string, as_of date, user_id string, rank int, item_id string, segment_label string, "
        "strategy_id string"
    )
    return spark.createDataFrame(rows, schema).withColumn(FB.CONTEXT, F.lit(WEEKDAY))


def fields(df: DataFrame) -> list[tuple[str, object]]:
    return [(f.name, f.dataType) for f in df.schema]


def fields_of(table: str) -> list[tuple[str, object]]:
    return [(f.name, f.dataType) for f in S.CONTRACTS[table]]


def feedback_settings(settings: Settings, **update: float) -> FeedbackSettings:
    return settings.feedback.model_copy(update=update)


def test_context_key() -> None:
    assert FB.context_key(Context(dt.date(2011, 9, 1), "morning")) == "weekday/morning"
    assert FB.context_key(Context(dt.date(2011, 9, 3), None)) == "weekend/any"


def test_feedback_from_purchases(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("u1", "a", "purchase", at(2, 10)),
            ("u1", "a", "purchase", at(1, 9)),  # the first purchase of the pair in the window
            ("u1", "b", "purchase", at(8)),  # the window ends after 7 days
            ("u1", "b", "return", at(3)),
            ("u2", "c", "purchase", at(6)),  # on or after `until`: not yet
            ("u2", "z", "purchase", at(3)),  # not served
            ("u3", "d", "purchase", dt.datetime(2011, 8, 31, 23)),  # before the list
        ],
        "user_id string, item_id string, event_type string, event_ts timestamp",
    )
    got = FB.feedback_from_purchases(served(spark), events, 7, dt.date(2011, 9, 6))
    expected = spark.createDataFrame(
        [
            ("r1", u, i, "impression", at(1))
            for u, i in [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u3", "a"), ("u3", "d")]
        ]
        + [("r1", "u1", "a", "purchase", at(1, 9))],
        FEEDBACK,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_feedback_that_does_not_count_is_quarantined_not_dropped(spark: SparkSession) -> None:
    rows = [
        ("r1", "u1", "a", "impression", at(1)),
        ("r1", "u1", "a", "purchase", at(2)),
        ("r1", "u2", "c", "click", at(2)),
        ("r1", "u2", "c", "add_to_cart", at(2)),
        ("r1", "u9", "a", "purchase", at(2)),  # u9 was never served
        ("r2", "u1", "a", "purchase", at(2)),  # no run r2 served a list
        ("r1", None, "a", "impression", at(1)),
        ("r1", "u1", "z", "purchase", at(3)),  # u1 was served, but not z
        ("r1", "u3", "d", "view", at(3)),  # not a feedback event type
        ("r1", "u3", "d", "click", at(9)),  # on the run's date: a later run counts it
        ("r1", "u2", "c", "click", at(2)),  # a second copy in this batch
        ("r1", "u3", "a", "impression", at(1)),  # recorded by an earlier run
    ]
    recorded = spark.createDataFrame([("r1", "u3", "a", "impression", at(1))], FEEDBACK)
    feedback = spark.createDataFrame(rows, FEEDBACK)
    split = FB.split_feedback(
        feedback, served(spark), source="log", run_id="check", until=dt.date(2011, 9, 9), recorded=recorded
    )
    valid, quarantined = split.valid.collect(), split.quarantined.collect()
    assert len(rows) == len(valid) + len(quarantined)
    assert sorted(tuple(r)[:5] for r in valid) == sorted(rows[:4])
    assert {(r.source, r.recorded_run_id) for r in valid} == {("log", "check")}
    assert fields(split.valid) == fields_of(S.FEEDBACK_EVENTS)
    assert fields(split.quarantined) == fields_of(S.QUARANTINE)
    got = sorted((r.reason, r.detail) for r in quarantined)
    assert got == [
        ("after_run_date", "event_ts=2011-09-09 00:00:00 (on or after the run's date 2011-09-09)"),
        ("bad_event_type", "event_type=view (expected one of impression, click, add_to_cart, purchase)"),
        (
            "duplicate_feedback",
            "the click of item_id=c by user_id=u2 at 2011-09-02 00:00:00 (list of run r1) is already counted",
        ),
        (
            "duplicate_feedback",
            "the impression of item_id=a by user_id=u3 at 2011-09-01 00:00:00 (list of run r1) "
            "is already counted",
        ),
        ("unknown_list", "run_id=r2 (no such list served in the feedback window)"),
        ("unknown_user", "user_id=<empty> (no list served by run r1)"),
        ("unknown_user", "user_id=u9 (no list served by run r1)"),
        ("unserved_item", "item_id=z (not in the list run r1 served to user_id=u1)"),
    ]
    assert {(r.table, r.source, r.run_id) for r in quarantined} == {("feedback_events", "log", "check")}
    assert '"user_id":"u9"' in next(r.raw for r in quarantined if "u9" in r.detail)


def test_arm_outcomes_count_each_served_item_once(spark: SparkSession) -> None:
    recorded = spark.createDataFrame(
        [
            ("r1", "u1", "a", "impression", at(1)),
            ("r1", "u1", "b", "impression", at(1)),
            ("r1", "u1", "b", "purchase", at(2)),  # converted before: counts nothing now
            ("r1", "u3", "d", "purchase", at(2)),  # bought, but its impression comes only now
            ("r0", "u1", "a", "impression", at(1)),  # another run's list: not served here
        ],
        FEEDBACK,
    )
    new = spark.createDataFrame(
        [
            ("r1", "u1", "a", "purchase", at(3)),  # a late purchase of an item shown before: converts now
            ("r1", "u1", "a", "purchase", at(4)),  # bought twice: one conversion
            ("r1", "u1", "b", "purchase", at(4)),
            ("r1", "u2", "c", "impression", at(1)),
            ("r1", "u2", "c", "click", at(2)),  # clicks do not convert
            ("r1", "u3", "d", "impression", at(1)),  # shown and (earlier) bought: a conversion
            ("r1", "u3", "a", "impression", at(1)),
        ],
        FEEDBACK,
    )
    got = sorted(map(tuple, FB.arm_outcomes(new, recorded, served(spark)).collect()))
    assert got == [("lapsing", WEEKDAY, "t", 2.0, 1.0), ("loyal", WEEKDAY, "s", 1.0, 1.0)]
    # without earlier feedback every event is new
    got = sorted(map(tuple, FB.arm_outcomes(recorded.unionByName(new), None, served(spark)).collect()))
    assert got == [("lapsing", WEEKDAY, "t", 2.0, 1.0), ("loyal", WEEKDAY, "s", 3.0, 2.0)]


def test_evidence_decays_by_age_and_priors_pool_the_segment(spark: SparkSession, settings: Settings) -> None:
    fb = feedback_settings(settings, half_life_days=7.0, prior_strength=100.0, prior_mean=0.05)
    old = FB.Arm("loyal", WEEKDAY, "s", 40.0, 4.0, dt.date(2011, 8, 25))
    assert old.decayed(START, 7.0) == FB.Arm("loyal", WEEKDAY, "s", 20.0, 2.0, START)  # a week = a half-life
    known = [
        old.decayed(START, 7.0),
        FB.Arm("loyal", WEEKDAY, "u", 80.0, 2.0, START),
        FB.Arm("lapsing", WEEKDAY, "t", 100.0, 0.0, START),
    ]
    updated = FB.update_arms(
        known, [("loyal", WEEKDAY, "s", 10.0, 3.0), ("new", WEEKDAY, "t", 5.0, 0.0)], START
    )
    assert updated == [
        FB.Arm("loyal", WEEKDAY, "s", 30.0, 5.0, START),
        FB.Arm("new", WEEKDAY, "t", 5.0, 0.0, START),  # a new arm starts from no evidence
    ]
    # the prior of an arm: its segment's base rate (shrunk toward the context's, toward prior_mean) times its
    # strategy's lift in the segments that tried it (shrunk toward 1)
    arms = [*updated, *known[1:]]
    context = (5 + 2 + 0 + 0 + 100 * 0.05) / (30 + 80 + 100 + 5 + 100)
    base = {
        "loyal": (5 + 2 + 100 * context) / (30 + 80 + 100),
        "lapsing": (0 + 100 * context) / (100 + 100),
        "new": (0 + 100 * context) / (5 + 100),
        "unseen": context,
    }
    t_lift = (0 + 100 * context) / (100 * base["lapsing"] + 5 * base["new"] + 100 * context)
    s_lift = (5 + 100 * context) / (30 * base["loyal"] + 100 * context)
    assert FB.prior_mean(arms, "loyal", "s", fb) == pytest.approx(base["loyal"] * s_lift)
    assert FB.prior_mean(arms, "loyal", "t", fb) == pytest.approx(
        base["loyal"] * t_lift
    )  # t did worse elsewhere
    assert t_lift < 1 < s_lift
    assert FB.prior_mean(arms, "unseen", "x", fb) == pytest.approx(
        context
    )  # no segment, no strategy evidence
    assert FB.prior_mean([], "loyal", "s", fb) == pytest.approx(0.05)  # before any feedback
    state = FB.state_rows(spark, updated, known, fb, "r1")
    assert fields(state) == fields_of(S.STRATEGY_STATE)
    loyal = next(r for r in state.collect() if r.segment_label == "loyal")
    mean = base["loyal"] * s_lift
    assert (loyal.alpha, loyal.beta) == pytest.approx((100 * mean + 5, 100 * (1 - mean) + 25))
    assert (loyal.context, loyal.updated_as_of, loyal.run_id) == (WEEKDAY, START, "r1")


def play(fb: FeedbackSettings, rates: dict[str, float], rounds: int) -> dict[str, int]:
    """A synthetic Bernoulli stream: pick a strategy for segment "s", observe one impression, update it."""
    rng = FB.segment_rng(fb, START, "s")
    world = np.random.default_rng(7)
    arms = {name: FB.Arm("s", WEEKDAY, name, 0.0, 0.0, START) for name in rates}
    pulls = dict.fromkeys(rates, 0)
    for _ in range(rounds):
        pick = FB.thompson_pick(list(arms.values()), "s", list(rates), fb, rng)
        pulls[pick] += 1
        converted = float(world.random() < rates[pick])
        arms[pick] = FB.update_arms([arms[pick]], [("s", WEEKDAY, pick, 1.0, converted)], START)[0]
    return pulls


def test_thompson_converges_to_the_better_arm(settings: Settings) -> None:
    fb = feedback_settings(settings, prior_strength=2.0, exploration_floor=0.05)
    pulls = play(fb, {"worse": 0.1, "better": 0.2}, 2000)
    assert pulls["better"] / 2000 > 0.8
    assert pulls["worse"] / 2000 >= 0.05  # the exploration floor


def test_exploration_floor_keeps_a_hopeless_arm_alive(settings: Settings) -> None:
    fb = feedback_settings(settings, exploration_floor=0.1)
    # the worse arm's posterior never wins a draw: only the floor picks it, about half of 2 x 0.1 of the time
    arms = [FB.Arm("s", WEEKDAY, "worse", 1e6, 0.0, START), FB.Arm("s", WEEKDAY, "better", 1e6, 9e5, START)]
    rng = FB.segment_rng(fb, START, "s")
    picks = [FB.thompson_pick(arms, "s", ["worse", "better"], fb, rng) for _ in range(4000)]
    assert picks.count("worse") / 4000 == pytest.approx(0.1, abs=0.02)


def test_thompson_is_reproducible_and_uses_the_prior_for_missing_arms(settings: Settings) -> None:
    fb = settings.feedback
    arms = [FB.Arm("loyal", WEEKDAY, "a", 500.0, 5.0, START)]

    def pick(segment: str, allowed: list[str]) -> str:
        return FB.thompson_pick(arms, segment, allowed, fb, FB.segment_rng(fb, START, segment))

    assert pick("loyal", ["a", "b", "c"]) == pick("loyal", ["a", "b", "c"])
    assert {pick("lapsing", ["a", "b"]) for _ in range(3)} <= {"a", "b"}
    with pytest.raises(ConfigError, match="segment 'gone' allows no strategy"):
        FB.thompson_pick(arms, "gone", [], fb, np.random.default_rng(0))
