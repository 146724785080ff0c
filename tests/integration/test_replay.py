"""`replay` for 2 weeks on real data (every third customer of the 2010-2011 export) from 2011-11-01, cheap
stage settings (no scorer, small ALS)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import SCORER_NAMES, Settings
from genre_spark.replay import ADAPTIVE, ReplayReport, replay, week_run_id
from genre_spark.strategy import allowed_strategies, load_strategies
from tests.conftest import RealWarehouse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(real_2011: RealWarehouse) -> RealWarehouse:
    """This module's real data: every third customer of the 2010-2011 export (see tests/conftest.py)."""
    return real_2011


START = dt.date(2011, 11, 1)
FIXED = ["win_back"]


def cheap(settings: Settings) -> Settings:
    s = settings
    off = {name: getattr(s.scoring, name).model_copy(update={"enabled": False}) for name in SCORER_NAMES}
    # the pairwise sources (co-occurrence, content, similar users) off, 20 candidates per remaining source
    limits = {
        name: 0 if name in ("co_occurrence", "content", "similar_users") else min(n, 20)
        for name, n in s.candidates.limits.items()
    }
    als = s.candidates.als.model_copy(update={"max_iter": 3, "rank": 8, "num_blocks": 2})
    return s.model_copy(
        update={
            "scoring": s.scoring.model_copy(update=off),
            "candidates": s.candidates.model_copy(update={"als": als, "limits": limits}),
            "segments": s.segments.model_copy(update={"k_min": 4, "k_max": 4, "silhouette_sample": 3000}),
            "replay": s.replay.model_copy(update={"strategies": FIXED}),
        }
    )


def test_replay_two_weeks(real: RealWarehouse, settings: Settings) -> None:
    store = real.store
    book = load_strategies()
    state_before = store.read_table(S.STRATEGY_STATE).count() if store.exists(S.STRATEGY_STATE) else 0
    report: ReplayReport = replay(store.spark, store, cheap(settings), book, START, 2)
    print(report.format())

    weeks = [START, START + dt.timedelta(days=7)]
    policies = [ADAPTIVE, *FIXED]
    assert [(r.as_of, r.policy) for r in report.rows] == [(w, p) for w in weeks for p in policies]
    table = store.read_table(S.REPLAY_REPORT).where(F.col(S.AS_OF).isin(*weeks))
    assert sorted((r.as_of, r.policy) for r in table.collect()) == sorted(
        (w, p) for w in weeks for p in policies
    )
    for r in report.rows:
        assert r.users_served > 1000 and r.impressions >= r.users_served
        assert 0 < r.purchased_items <= r.impressions and 0 < r.buyers <= r.users_served
        assert 0.0 < r.ndcg < 1.0

    # the served lists are the adaptive policy's, among the allowed strategies of each segment
    segments = {
        (r.segment_id, r.segment_label)
        for r in store.read_table(S.USER_SEGMENTS)
        .where(F.col(S.AS_OF) == START)
        .select(S.SEGMENT_ID, S.SEGMENT_LABEL)
        .distinct()
        .collect()
    }
    served = store.read_table(S.RECOMMENDATIONS).where(F.col(S.AS_OF) == START)
    picked = {
        (r.segment_id, r.strategy_id) for r in served.select(S.SEGMENT_ID, "strategy_id").distinct().collect()
    }
    allowed = {sid: allowed_strategies(book, sid, label) for sid, label in segments}
    assert all(strategy in allowed[sid] for sid, strategy in picked)

    # feedback of the served lists only: an impression per served item, a purchase per bought one
    feedback = store.read_table(S.FEEDBACK_EVENTS).where(
        F.col(S.RUN_ID) == week_run_id(cheap(settings), START)
    )
    adaptive0 = report.rows[0]
    assert feedback.where(F.col(S.EVENT_TYPE) == S.IMPRESSION).count() == adaptive0.impressions
    assert feedback.where(F.col(S.EVENT_TYPE) == S.PURCHASE).count() == adaptive0.purchased_items
    assert all(f.valid == f.feedback_in and f.quarantined == 0 for f in report.feedback)

    # the later week reuses the first week's segment model
    profiles = store.read_table(S.SEGMENT_PROFILES).where(F.col(S.AS_OF).isin(*weeks))
    assert profiles.select("model_run_id").distinct().count() == 1

    # strategy_state grew: the feedback stage of each later run (and one after the last week) fed the week
    # before back, keyed by the labels of that week's segments (one model, but a segment's label follows its
    # members' figures of the week)
    state = store.read_table(S.STRATEGY_STATE)
    assert state.count() > state_before
    fed_back = [dt.date(2011, 11, 8), dt.date(2011, 11, 15)]
    assert set(fed_back) <= {r[0] for r in state.select("updated_as_of").distinct().collect()}
    state = state.where(F.col("updated_as_of").isin(*fed_back))
    week_labels = store.read_table(S.USER_SEGMENTS).where(F.col(S.AS_OF).isin(*weeks)).select(S.SEGMENT_LABEL)
    assert {r[0] for r in state.select(S.SEGMENT_LABEL).distinct().collect()} <= {
        r[0] for r in week_labels.distinct().collect()
    }
    assert [f.as_of for f in report.feedback] == [*weeks, dt.date(2011, 11, 15)]
    assert all(Path(f).is_file() for f in report.files) and len(report.files) == 2
