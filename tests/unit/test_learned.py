"""The learned ranker on inline data: no feature or label reads on or after its date, the Spark fit matches a
local xgboost fit, the ranking fails rather than fall back, and the new-items mode never lists a purchase."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import xgboost
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import Settings
from genre_spark.errors import RankerMissingError
from genre_spark.history import History
from genre_spark.learned import model as M
from genre_spark.learned.features import MISSING_RANK, feature_columns, pair_features
from genre_spark.learned.stage import (
    MODEL_KIND,
    ModelNote,
    feature_users,
    features_run_id,
    fingerprint,
    reusable_model,
    score_pairs,
    training_cutoffs,
    training_users,
    with_labels,
)
from genre_spark.pipeline import (
    PROPOSED_FOR_KEY,
    STAGE_SETTINGS_KEY,
    RunContext,
    cutoff_context,
    missing_stages,
    training_reads_segments,
)
from genre_spark.ranking import RankingInputs, rank, rule_chooser
from genre_spark.storage import TableStore
from genre_spark.strategy import Context, StrategyBook, load_strategies, new_items_book
from tests.conftest import history_of, in_contract

CUTOFF = dt.date(2011, 11, 1)  # features as of this date ...
END = dt.date(2011, 11, 29)  # ... labels from [CUTOFF, END)


def events(spark: SparkSession, rows: list[tuple[str, str, str]]) -> DataFrame:
    """(user, item, timestamp) purchases with the events columns the history reads (one order per line)."""
    return spark.createDataFrame(rows, "user_id string, item_id string, ts string").select(
        S.USER_ID,
        S.ITEM_ID,
        F.lit(S.PURCHASE).alias(S.EVENT_TYPE),
        F.to_timestamp("ts").alias(S.EVENT_TS),
        F.concat(F.lit("o-"), F.col(S.USER_ID), F.col("ts")).alias(S.ORDER_ID),
        F.lit(2).alias(S.QUANTITY),
        F.lit(1.5).alias(S.UNIT_PRICE),
    )


def items(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([(i, True) for i in "ABCDE"], "item_id string, is_product boolean")


def candidates(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [("u1", i, "als", 5.0 - n, n + 1) for n, i in enumerate("ABCDE")]
        + [("u1", "A", "buy_again", 3.0, 1)],
        "user_id string, item_id string, source string, source_score double, source_rank int",
    )


def segments(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [("u1", 2, 1.0)], f"user_id string, segment_id int, {S.STRATEGY_INDEX} double"
    )


PAST = [
    ("u1", "A", "2011-09-20 10:00:00"),
    ("u1", "A", "2011-10-20 10:00:00"),
    ("u1", "B", "2011-10-25 10:00:00"),
    ("u2", "A", "2011-10-25 10:00:00"),
]
FUTURE = [
    ("u1", "B", "2011-11-01 00:00:00"),  # first instant of the label window
    ("u1", "C", "2011-11-28 23:59:59"),  # last instant of the label window
    ("u1", "D", "2011-11-29 00:00:00"),  # on the window's end: never a label
    ("u2", "A", "2011-11-02 00:00:00"),
]


def features(spark: SparkSession, rows: list[tuple[str, str, str]], sampled: bool = False) -> DataFrame:
    purchases = history_of(events(spark, rows), items(spark), CUTOFF).purchases()
    season_days = (END - CUTOFF).days
    return pair_features(
        candidates(spark), purchases, segments(spark), None, CUTOFF, season_days, sampled
    ).orderBy(S.ITEM_ID)


def test_features_ignore_events_on_or_after_the_cutoff(spark: SparkSession) -> None:
    with_future = features(spark, PAST + FUTURE)
    assert_df_equality(with_future, features(spark, PAST))
    # candidates for a sample (u1, not u2): the user side reads the sample's purchases, the item side all
    assert_df_equality(features(spark, PAST, sampled=True), with_future)
    assert with_future.columns == [S.USER_ID, S.ITEM_ID, *feature_columns()]
    a = with_future.filter(F.col(S.ITEM_ID) == "A").first()
    assert a is not None
    assert (a.ui_orders, a.ui_order_share, a.ui_days_since_last, a.ui_days_since_first) == (
        2.0,
        2 / 3,
        12.0,
        42.0,
    )
    assert a.ui_gap_days == 30.0 and a.ui_due == pytest.approx(12 / 30)
    assert a.ui_decay_60d_rank == 1.0 and a.ui_quantity_share == pytest.approx(2 / 3)
    assert a.item_buyers_1w == 1.0 and a.item_buyers_4w == 2.0 and a.item_repurchase_rate == 0.5
    assert (
        a.buy_again_score == 1.0
        and a.als_rank == 1.0
        and a.content_rank == MISSING_RANK
        and a.n_sources == 2.0
    )
    assert (a.segment_id, a.strategy_index, a.u_orders, a.u_repeat_rate) == (2.0, 1.0, 3.0, 0.5)
    # each source's score over the user's best from it; 0 where it did not propose the item
    rows = with_future.collect()
    assert [r.als_score for r in rows] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert [r.buy_again_score for r in rows] == [1.0, 0.0, 0.0, 0.0, 0.0]
    e = with_future.filter(F.col(S.ITEM_ID) == "E").first()
    assert e is not None and e.ui_orders == 0.0 and e.ui_gap_days is None and e.item_buyers_4w is None


def test_a_shortlist_keeps_the_pairs_best_placed_by_any_source(spark: SparkSession) -> None:
    """als ranks A B C D, content E D C: the best ranks are A and E 1, D and B 2 (D first: its source
    scores sum higher), C 3; by the sum alone D and C would lead. Each kept row is as among all pairs."""
    rows = [("u1", i, "als", 5.0 - n / 10, n + 1) for n, i in enumerate("ABCD")]
    rows += [("u1", "E", "content", 1.0, 1), ("u1", "D", "content", 0.9, 2), ("u1", "C", "content", 0.85, 3)]
    proposed = spark.createDataFrame(
        rows, "user_id string, item_id string, source string, source_score double, source_rank int"
    )
    purchases = history_of(events(spark, PAST), items(spark), CUTOFF).purchases()

    def kept(n: int | None) -> DataFrame:
        days = (END - CUTOFF).days
        frame = pair_features(proposed, purchases, segments(spark), None, CUTOFF, days, shortlist=n)
        return frame.orderBy(S.ITEM_ID)

    assert [r.item_id for r in kept(2).collect()] == ["A", "E"]
    assert_df_equality(kept(4), kept(None).filter(F.col(S.ITEM_ID).isin("A", "B", "D", "E")))


def test_season_features_look_at_the_label_window_a_year_back(spark: SparkSession) -> None:
    """The label window [2011-11-01, 2011-11-29) 52 weeks back is [2010-11-02, 2010-11-30); the window
    before it [2010-10-05, 2010-11-02)."""
    year_back = [
        ("u1", "C", "2010-11-02 00:00:00"),  # first instant of the window a year back
        ("u2", "C", "2010-11-29 23:59:59"),  # its last instant
        ("u2", "C", "2010-10-05 00:00:00"),  # first instant of the window before it
        ("u2", "D", "2010-11-30 00:00:00"),  # the window's end: after it
        ("u1", "D", "2010-11-01 23:59:59"),  # the window before
    ]
    got = {r[S.ITEM_ID]: r for r in features(spark, PAST + year_back).collect()}
    c, d, a = got["C"], got["D"], got["A"]
    assert (c.item_buyers_last_year, c.item_season_trend, c.ui_orders_last_year) == (2.0, 1.0, 1.0)
    assert (d.item_buyers_last_year, d.item_season_trend, d.ui_orders_last_year) == (0.0, 0.0, 0.0)
    assert (a.item_buyers_last_year, a.ui_orders_last_year) == (0.0, 0.0)


def test_labels_come_only_from_the_label_window(spark: SparkSession) -> None:
    labelled = with_labels(features(spark, PAST), events(spark, PAST + FUTURE), items(spark), CUTOFF, END)
    got = {r[S.ITEM_ID]: r[S.LABEL] for r in labelled.collect()}
    assert got == {"A": 0.0, "B": 1.0, "C": 1.0, "D": 0.0, "E": 0.0}


def test_every_label_window_ends_by_the_as_of_date(settings: Settings) -> None:
    tuned = settings.discriminator.model_copy(update={"label_days": 28, "cutoffs": 3, "cutoff_step_days": 14})
    as_of = dt.date(2011, 9, 1)
    cutoffs = training_cutoffs(as_of, tuned)
    assert cutoffs == [dt.date(2011, 8, 4), dt.date(2011, 7, 21), dt.date(2011, 7, 7)]
    assert all(t + dt.timedelta(days=tuned.label_days) <= as_of for t in cutoffs)
    year_back = training_cutoffs(as_of, tuned.model_copy(update={"year_back_cutoff": True}))
    assert year_back == [*cutoffs, dt.date(2010, 9, 2)]  # 52 weeks before, a Thursday as 2011-09-01


def test_spark_ranker_matches_a_local_xgboost_fit(spark: SparkSession, settings: Settings) -> None:
    rng = np.random.default_rng(7)
    rows = []
    for user in range(40):
        for item in range(12):
            x = rng.normal(size=3)
            label = float(x[0] + 0.5 * x[1] + rng.normal(scale=0.3) > 0.8)
            rows.append((f"u{user:02d}", f"i{item:02d}", dt.date(2011, 8, 1), label, *map(float, x)))
    columns = ["f0", "f1", "f2"]
    data = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, S.AS_OF, S.LABEL, *columns])
    tuned = settings.discriminator.model_copy(
        update={
            "n_estimators": 20,
            "max_depth": 3,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "num_workers": 1,
        }
    )
    training = spark.createDataFrame(data)
    fitted = M.fit(training, tuned, columns)
    got = M.predict(fitted, training).select(S.USER_ID, S.ITEM_ID, "score").toPandas()

    # the same data, queries in the order the fit sorts them (by query id, then item id)
    qids = training.select(S.USER_ID, M.query_id(S.USER_ID, S.AS_OF).alias("qid")).distinct().toPandas()
    local = data.merge(qids, on=S.USER_ID).sort_values(["qid", S.ITEM_ID])
    ranker = xgboost.XGBRanker(**M.booster_params(tuned), missing=np.nan, n_jobs=1)
    ranker.fit(local[columns], local[S.LABEL], qid=local["qid"])
    local["expected"] = ranker.predict(local[columns])
    merged = got.merge(local, on=[S.USER_ID, S.ITEM_ID])
    assert len(merged) == len(data)
    np.testing.assert_allclose(merged["score"], merged["expected"], rtol=1e-5, atol=1e-5)
    assert merged[S.LABEL].corr(merged["score"]) > 0.5  # it learned the signal
    # two workers sampling rows: a fit is the same model after other jobs ran in the session (the
    # estimator's range partitioning seeded its bounds with the RDD's id, a count of those jobs)
    sampled = tuned.model_copy(update={"num_workers": 2, "subsample": 0.5})
    more = pd.DataFrame(
        [
            (f"v{u:03d}", f"i{i:02d}", dt.date(2011, 8, 1), float(rng.random() < 0.3), *rng.normal(size=3))
            for u in range(300)
            for i in range(10)
        ],
        columns=data.columns,
    )
    wide = spark.createDataFrame(more).repartition(4)

    def scores() -> np.ndarray:
        fitted = M.fit(wide, sampled, columns)
        frame = M.predict(fitted, wide).select(S.USER_ID, S.ITEM_ID, "score").toPandas()
        return frame.sort_values([S.USER_ID, S.ITEM_ID])["score"].to_numpy()

    first = scores()
    spark.range(10).repartition(3).count()  # more RDDs
    np.testing.assert_array_equal(scores(), first)

    # the stage's one-pass scoring of both models: the same scores, the second where never bought
    bought_before = training.withColumn("ui_orders", (F.col(S.ITEM_ID) < "i04").cast("double"))
    both = score_pairs(bought_before, fitted, fitted).toPandas().merge(got, on=[S.USER_ID, S.ITEM_ID])
    np.testing.assert_allclose(both[S.LEARNED_SCORE], both["score"], rtol=1e-6)
    never = both["ui_orders"] == 0
    np.testing.assert_allclose(both.loc[never, S.LEARNED_NEW_SCORE], both.loc[never, "score"], rtol=1e-6)
    assert both.loc[~never, S.LEARNED_NEW_SCORE].isna().all() and never.sum() == 40 * 8


def learned_book(**changes: object) -> StrategyBook:
    rules = {
        "exclude_returned": False,
        "exclude_recently_bought_days": 0,
        "exclude_recently_bought_categories": [],
        "max_price_ratio": None,
        "campaign_items": [],
        "campaign_slots": 0,
        **changes,
    }
    strategy = {
        "description": "test",
        "source_weights": {"als": 1.0},
        "scorer_weights": {},
        "max_per_category": None,
        "rules": rules,
        "ranker": "learned",
    }
    return StrategyBook.model_validate({"strategies": {"s": strategy}, "selection": [], "default": "s"})


def ranking_inputs(spark: SparkSession) -> tuple[DataFrame, DataFrame, History]:
    cands = candidates(spark).withColumn("detail", F.lit("because"))
    segs = spark.createDataFrame(
        [("u1", 0, "regulars")], "user_id string, segment_id int, segment_label string"
    )
    catalog = (
        items(spark).withColumn(S.CATEGORY_ID, F.lit(None).cast("int")).withColumn(S.UNIT_PRICE, F.lit(1.0))
    )
    return cands, segs, history_of(events(spark, PAST), catalog, CUTOFF)


def test_a_learned_strategy_without_scores_fails(spark: SparkSession) -> None:
    cands, segs, history = ranking_inputs(spark)
    ctx = Context(CUTOFF, None)
    with pytest.raises(RankerMissingError, match=r"strategies \['s'\] rank with the learned ranker"):
        rank(spark, RankingInputs(cands, segs, history), learned_book(), ctx, 3, "r", "v")


def test_learned_order_and_the_new_items_mode(spark: SparkSession) -> None:
    cands, segs, history = ranking_inputs(spark)
    # the ranker prefers C, then A (bought before), E, B (bought before), D; the new-items model ranks the
    # items u1 never bought: D, then C, then E
    scores = [("A", 4.0, None), ("B", 2.0, None), ("C", 5.0, 2.0), ("D", 1.0, 3.0), ("E", 3.0, 1.0)]
    learned = spark.createDataFrame(
        [("u1", *row) for row in scores],
        f"user_id string, item_id string, {S.LEARNED_SCORE} double, {S.LEARNED_NEW_SCORE} double",
    )
    ctx = Context(CUTOFF, None)

    def top(book: StrategyBook) -> list[str]:
        inputs = RankingInputs(cands, segs, history, learned=learned)
        recs = rank(spark, inputs, book, ctx, 3, "r", "v", rule_chooser(book, ctx))
        return [r[S.ITEM_ID] for r in recs.orderBy("rank").collect()]

    assert top(learned_book()) == ["C", "A", "E"]  # every source's candidates, in the learned order
    assert top(new_items_book(learned_book())) == ["D", "C", "E"]  # nothing u1 bought before
    # a campaign item is featured, but not in the new-items mode when the user bought it before
    assert "B" in top(learned_book(campaign_items=["B"], campaign_slots=1))
    assert top(new_items_book(learned_book(campaign_items=["B"], campaign_slots=1))) == ["D", "C", "E"]


def test_the_cut_offs_score_only_for_a_model_that_uses_the_lm_scores(
    spark: SparkSession, settings: Settings, store: TableStore
) -> None:
    day = dt.date(2011, 9, 1)

    scoring = settings.scoring.model_copy(
        update={"bi_encoder": settings.scoring.bi_encoder.model_copy(update={"enabled": True})}
    )

    def missing(without: list[str]) -> list[str]:
        ranker = settings.discriminator.model_copy(update={"without": without})
        tuned = settings.model_copy(update={"discriminator": ranker, "scoring": scoring})
        ctx = RunContext(spark, store, tuned, day, "r", load_strategies(), Context(day, None))
        return missing_stages(ctx, day)

    assert missing(["segment"]) == ["features", "segments", "candidates", "scoring"]
    assert missing(["segment", "lm"]) == ["features", "segments", "candidates"]


def test_a_cut_off_fits_segments_only_when_the_ranker_reads_them(settings: Settings) -> None:
    def reads(without: list[str], segment_popularity: int) -> bool:
        limits = {**settings.candidates.limits, "segment_popularity": segment_popularity}
        tuned = {
            "discriminator": settings.discriminator.model_copy(update={"without": without}),
            "candidates": settings.candidates.model_copy(update={"limits": limits}),
        }
        return training_reads_segments(settings.model_copy(update=tuned))

    assert not reads(["segment", "season"], 0)  # the defaults: the cut-offs' segments are not fitted
    assert reads(["season"], 0)  # the segment feature group
    assert reads(["segment"], 50)  # the segment-popularity source's candidates


def test_the_cut_offs_rerun_when_other_stage_settings_wrote_their_candidates(
    spark: SparkSession, settings: Settings, store: TableStore
) -> None:
    day = dt.date(2011, 6, 9)

    def ctx_with(**sections: object) -> RunContext:
        tuned = settings.model_copy(update=sections)
        return RunContext(spark, store, tuned, day, "r", load_strategies(), Context(day, None))

    def write_candidates(ctx: RunContext) -> None:
        past = cutoff_context(ctx, day)
        store.commit_tags = {STAGE_SETTINGS_KEY: past.stage_settings, PROPOSED_FOR_KEY: past.proposed_for}
        rows = spark.createDataFrame([("u1", "A", "buy_again", 1.0, 1, None, day)], S.contract(S.CANDIDATES))
        store.replace_date(rows, S.CANDIDATES, as_of=day, run_id=past.run_id, stage="candidates")

    every_stage = ["features", "segments", "candidates"]
    base = ctx_with()
    assert missing_stages(base, day) == every_stage  # nothing written yet
    first_id = cutoff_context(base, day).run_id
    write_candidates(base)
    first_features = features_run_id(store, "r", day)
    assert missing_stages(base, day) == []
    # the ranker's, evaluate's and the lists' settings leave the stages' outputs valid
    ranker = settings.discriminator.model_copy(update={"n_estimators": 7, "year_back_cutoff": True})
    evaluation = settings.evaluation.model_copy(update={"ablations": False})
    assert missing_stages(ctx_with(discriminator=ranker, evaluation=evaluation), day) == []
    # other candidates: the cut-off runs again, under a run id of its own
    other = ctx_with(candidates=settings.candidates.model_copy(update={"min_co_count": 9}))
    assert missing_stages(other, day) == every_stage
    write_candidates(other)
    assert missing_stages(base, day) == every_stage  # back to the first settings: not the other's candidates
    assert cutoff_context(base, day).run_id != first_id  # a new write, not a skipped rerun of the first
    assert features_run_id(store, "r", day) != first_features  # new candidates, new ranker features
    # the cut-off's candidates are for its training sample: another sample needs them again
    write_candidates(base)
    assert missing_stages(base, day) == []
    other_sample = settings.discriminator.model_copy(update={"max_training_users": 5})
    assert missing_stages(ctx_with(discriminator=other_sample), day) == every_stage
    # made with its segments unfitted (the defaults): a ranker that reads the segments needs them fitted
    reads_segments = settings.discriminator.model_copy(update={"without": ["season"]})
    assert missing_stages(ctx_with(discriminator=reads_segments), day) == every_stage


def test_a_cut_off_proposes_for_a_hash_sample_of_its_label_window_buyers(
    spark: SparkSession, settings: Settings, store: TableStore
) -> None:
    """Its buyers in [CUTOFF, END) who bought before it (have a segment), at most max_training_users."""
    buyers = [f"b{n}" for n in range(6)]
    rows = [(u, "A", "2011-10-01 10:00:00") for u in [*buyers, "quiet"]]  # quiet: nothing in the window
    rows += [(u, "B", "2011-11-10 10:00:00") for u in [*buyers, "newcomer"]]  # newcomer: no segment
    rows += [("late", "B", "2011-11-29 10:00:00")]  # after the label window
    every_event = events(spark, rows)
    history = history_of(every_event, items(spark), CUTOFF)
    store.write_table(in_contract(every_event, S.EVENTS), S.EVENTS, mode="overwrite", run_id="setup")
    segmented = spark.createDataFrame(
        [(u, 0, CUTOFF) for u in [*buyers, "quiet", "late"]], "user_id string, segment_id int, as_of date"
    )
    segmented = in_contract(segmented, S.USER_SEGMENTS)
    store.write_table(segmented, S.USER_SEGMENTS, mode="overwrite", run_id="setup")
    label_days = (END - CUTOFF).days

    def sample(cap: int | None, seed: int = 0, of: Callable[..., DataFrame] = training_users) -> set[str]:
        ranker = settings.discriminator.model_copy(
            update={"label_days": label_days, "max_training_users": cap, "seed": seed}
        )
        return {r.user_id for r in of(store, history, ranker).collect()}

    assert sample(None) == set(buyers)
    three = sample(3)
    assert len(three) == 3 and three < set(buyers) and sample(3) == three  # the same draw every time
    assert sample(4) > three  # a larger cap keeps the smaller sample's users (smallest hashes first)
    assert any(len(sample(3, seed)) == 3 and sample(3, seed) != three for seed in range(1, 5))
    # the cut-off's features (and so its segments) are for the same users, found from the events alone:
    # the buyers who ordered before it (not the newcomer), and with a cap the same hash sample
    assert sample(None, of=feature_users) == set(buyers)
    assert sample(3, of=feature_users) == three and sample(4, of=feature_users) == sample(4)


def test_a_saved_model_is_reused_only_when_young_and_trained_on_the_same_stage_settings(
    settings: Settings, store: TableStore
) -> None:
    ranker = settings.discriminator.model_copy(update={"max_model_age_days": 6})
    columns = feature_columns(frozenset(ranker.without))
    trained_as = fingerprint(ranker, columns, "stages-a")
    note = ModelNote("m1", CUTOFF, [CUTOFF], columns, 1, 2, 1, [], trained_as, label_recall=0.5)
    store.write_model_note(MODEL_KIND, "m1", note.to_json())
    store.set_latest_model(MODEL_KIND, "m1")
    later = CUTOFF + dt.timedelta(days=6)
    assert reusable_model(store, later, ranker, trained_as) == note
    assert reusable_model(store, later + dt.timedelta(days=1), ranker, trained_as) is None  # too old
    other_candidates = fingerprint(ranker, columns, "stages-b")  # the cut-offs' stages ran otherwise
    assert other_candidates != trained_as and reusable_model(store, later, ranker, other_candidates) is None
    deeper = ranker.model_copy(update={"max_depth": 7})
    assert fingerprint(deeper, columns, "stages-a") != trained_as
    # the reuse policy is not a training knob
    assert fingerprint(ranker.model_copy(update={"max_model_age_days": 1}), columns, "stages-a") == trained_as
