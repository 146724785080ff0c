"""Feedback events from purchases, quarantine of unknown feedback, decayed posteriors, Thompson sampling."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from genre_spark import feedback as FB
from genre_spark import schemas as S
from genre_spark.config import FeedbackSettings, Settings
from genre_spark.errors import ConfigError
from genre_spark.strategy import Context

START = dt.date(2011, 9, 1)
END = dt.date(2011, 9, 8)
MORNING = "weekday/morning"
FEEDBACK = "run_id string, user_id string, item_id string, event_type string, event_ts timestamp"


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2011, 9, day, hour)


def served(spark: SparkSession) -> DataFrame:
    """Run r1 served u1 [a, b] and u2 [c] with strategy s in segment 0, u3 [a, d] with t in segment 1."""
    rows = [
        ("r1", "u1", 1, "a", 0, "s"),
        ("r1", "u1", 2, "b", 0, "s"),
        ("r1", "u2", 1, "c", 0, "s"),
        ("r1", "u3", 1, "a", 1, "t"),
        ("r1", "u3", 2, "d", 1, "t"),
    ]
    return spark.createDataFrame(
        rows, "run_id string, user_id string, rank int, item_id string, segment_id int, strategy_id string"
    )


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
            ("u1", "b", "purchase", at(8)),  # end is exclusive
            ("u1", "b", "return", at(3)),
            ("u2", "z", "purchase", at(3)),  # not served
            ("u3", "d", "purchase", dt.datetime(2011, 8, 31, 23)),  # before the window
        ],
        "user_id string, item_id string, event_type string, event_ts timestamp",
    )
    got = FB.feedback_from_purchases(served(spark), events, START, END)
    expected = spark.createDataFrame(
        [
            ("r1", u, i, "impression", at(1))
            for u, i in [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u3", "a"), ("u3", "d")]
        ]
        + [("r1", "u1", "a", "purchase", at(1, 9))],
        FEEDBACK,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_unknown_feedback_is_quarantined_not_dropped(spark: SparkSession) -> None:
    rows = [
        ("r1", "u1", "a", "impression", at(1)),
        ("r1", "u1", "a", "purchase", at(2)),
        ("r1", "u2", "c", "click", at(2)),
        ("r1", "u9", "a", "purchase", at(2)),  # u9 was never served
        ("r2", "u1", "a", "purchase", at(2)),  # served by r1, not by r2
        ("r1", None, "a", "impression", at(1)),
        ("r1", "u1", "z", "purchase", at(3)),  # u1 was served, but not z
        ("r1", "u3", "d", "view", at(3)),  # not a feedback event type
    ]
    feedback = spark.createDataFrame(rows, FEEDBACK)
    split = FB.split_feedback(feedback, served(spark), source="replay", run_id="check")
    valid, quarantined = split.valid.collect(), split.quarantined.collect()
    assert len(rows) == len(valid) + len(quarantined)
    assert sorted(tuple(r)[:4] for r in valid) == sorted(r[:4] for r in rows[:3])
    assert fields(split.valid) == fields_of(S.FEEDBACK_EVENTS)
    assert fields(split.quarantined) == fields_of(S.QUARANTINE)
    got = sorted((r.reason, r.detail) for r in quarantined)
    assert got == [
        ("bad_event_type", "event_type=view (expected one of impression, click, purchase)"),
        ("unknown_user", "user_id=<empty> (no list served by run r1)"),
        ("unknown_user", "user_id=u1 (no list served by run r2)"),
        ("unknown_user", "user_id=u9 (no list served by run r1)"),
        ("unserved_item", "item_id=z (not in the list run r1 served to user_id=u1)"),
    ]
    assert {(r.table, r.source, r.run_id) for r in quarantined} == {("feedback_events", "replay", "check")}
    assert '"user_id":"u9"' in next(r.raw for r in quarantined if "u9" in r.detail)


def test_posterior_update_with_decay(spark: SparkSession, settings: Settings) -> None:
    fb_settings = feedback_settings(settings, prior_alpha=1.0, prior_beta=19.0, decay=0.5)
    feedback = spark.createDataFrame(
        [
            ("r1", u, i, "impression", at(1))
            for u, i in [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u3", "a"), ("u3", "d")]
        ]
        + [
            ("r1", "u1", "a", "purchase", at(2)),
            ("r1", "u1", "a", "purchase", at(3)),  # a second purchase of the same served item: one conversion
            ("r1", "u2", "c", "click", at(2)),  # clicks do not convert
            ("r1", "u3", "d", "purchase", at(4)),
        ],
        FEEDBACK,
    )
    outcomes = FB.arm_outcomes(feedback, served(spark))
    assert sorted(map(tuple, outcomes.collect())) == [(0, "s", 3, 1), (1, "t", 2, 1)]

    previous = spark.createDataFrame(
        [
            (0, MORNING, "s", 0.0, 0.0, 99.0, 0.0, dt.date(2011, 8, 18), "old"),  # superseded by the next row
            (0, MORNING, "s", 3.0, 27.0, 10.0, 2.0, dt.date(2011, 8, 25), "prev"),
            (0, MORNING, "old", 5.0, 19.0, 4.0, 4.0, dt.date(2011, 8, 25), "prev"),  # no new feedback: decays
            (0, "weekend/any", "s", 1.0, 19.0, 0.0, 0.0, dt.date(2011, 8, 25), "prev"),  # other context
        ],
        S.CONTRACTS[S.STRATEGY_STATE],
    )
    got = FB.update_strategy_state(
        previous, outcomes, fb_settings, context=MORNING, as_of=START, run_id="r1"
    ).orderBy(S.SEGMENT_ID, S.STRATEGY_ID)
    # impressions' = 0.5 x previous + new, conversions likewise; alpha = 1 + conv, beta = 19 + imp - conv
    expected = spark.createDataFrame(
        [
            (0, MORNING, "old", 3.0, 19.0, 2.0, 2.0, START, "r1"),
            (0, MORNING, "s", 3.0, 25.0, 8.0, 2.0, START, "r1"),  # 0.5 x 10 + 3, 0.5 x 2 + 1
            (1, MORNING, "t", 2.0, 20.0, 2.0, 1.0, START, "r1"),  # new arm: from the prior
        ],
        S.CONTRACTS[S.STRATEGY_STATE],
    )
    assert_df_equality(got, expected, ignore_nullable=True)

    # the driver-side step is the same formula
    step = FB.posterior_step(FB.Arm(0, "s", 3.0, 27.0), 3.0, 1.0, fb_settings)
    assert (step.alpha, step.beta) == (3.0, 25.0)


def test_first_update_starts_from_the_prior(spark: SparkSession, settings: Settings) -> None:
    outcomes = spark.createDataFrame(
        [(2, "s", 10, 3)], "segment_id int, strategy_id string, impressions long, conversions long"
    )
    got = FB.update_strategy_state(
        None,
        outcomes,
        feedback_settings(settings, prior_alpha=2.0, prior_beta=8.0),
        context=MORNING,
        as_of=START,
        run_id="r",
    ).collect()
    assert [(r.alpha, r.beta, r.impressions, r.conversions) for r in got] == [(5.0, 15.0, 10.0, 3.0)]


def play(
    fb_settings: FeedbackSettings, rates: dict[str, float], rounds: int, arms: dict[str, FB.Arm]
) -> dict[str, int]:
    """A synthetic Bernoulli stream: pick a strategy for segment 0, observe one impression, update it."""
    rng = FB.selection_rng(fb_settings, START)
    world = np.random.default_rng(7)
    pulls = dict.fromkeys(rates, 0)
    for _ in range(rounds):
        pick = FB.thompson_select(arms.values(), {0: list(rates)}, fb_settings, rng)[0]
        pulls[pick] += 1
        converted = float(world.random() < rates[pick])
        arms[pick] = FB.posterior_step(arms[pick], 1.0, converted, fb_settings)
    return pulls


def test_thompson_converges_to_the_better_arm(settings: Settings) -> None:
    fb_settings = feedback_settings(
        settings, prior_alpha=1.0, prior_beta=1.0, decay=1.0, exploration_floor=0.05
    )
    arms = {name: FB.Arm(0, name, 1.0, 1.0) for name in ("worse", "better")}
    pulls = play(fb_settings, {"worse": 0.1, "better": 0.2}, 2000, arms)
    assert pulls["better"] / 2000 > 0.8
    assert pulls["worse"] / 2000 >= 0.05  # the exploration floor


def test_exploration_floor_keeps_a_hopeless_arm_alive(settings: Settings) -> None:
    fb_settings = feedback_settings(settings, exploration_floor=0.1)
    # the worse arm's posterior never wins a draw: only the floor picks it, about half of 2 x 0.1 of the time
    arms = [FB.Arm(0, "worse", 1.0, 1e6), FB.Arm(0, "better", 1e6, 1.0)]
    rng = FB.selection_rng(fb_settings, START)
    picks = [FB.thompson_select(arms, {0: ["worse", "better"]}, fb_settings, rng)[0] for _ in range(4000)]
    assert picks.count("worse") / 4000 == pytest.approx(0.1, abs=0.02)


def test_thompson_is_reproducible_and_uses_the_prior_for_missing_arms(settings: Settings) -> None:
    arms = [FB.Arm(0, "a", 5.0, 50.0), FB.Arm(1, "a", 2.0, 2.0)]
    allowed = {1: ["a", "b"], 0: ["a", "b", "c"]}
    first = FB.thompson_select(arms, allowed, settings.feedback, FB.selection_rng(settings.feedback, START))
    again = FB.thompson_select(arms, allowed, settings.feedback, FB.selection_rng(settings.feedback, START))
    assert first == again and set(first) == {0, 1}
    assert first[0] in {"a", "b", "c"} and first[1] in {"a", "b"}
    with pytest.raises(ConfigError, match="segment 2 allows no strategy"):
        FB.thompson_select(arms, {2: []}, settings.feedback, np.random.default_rng(0))
