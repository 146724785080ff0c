"""Enrich -> features -> segments -> candidates -> scoring -> ranking on real data (every third customer
of the 2010-2011 export), as of 2011-12-09."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import CandidateReport, run_candidates
from genre_spark.config import Settings
from genre_spark.enrich import EnrichReport, run_enrich
from genre_spark.errors import PartialInputError
from genre_spark.features import FeatureReport, run_features
from genre_spark.history import History, bought_pairs
from genre_spark.learned import model as M
from genre_spark.learned.stage import MODEL_KIND, training_cutoffs
from genre_spark.pipeline import RunContext, run_stages, train_discriminator, write_date_features
from genre_spark.ranking import RankingReport, run_ranking
from genre_spark.scoring import ScoringReport, run_scoring
from genre_spark.segments import UNSEGMENTED, SegmentReport, run_segments
from genre_spark.strategy import context_for, load_strategies, new_items_book
from tests.conftest import REAL_RUN, RealWarehouse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(real_2011: RealWarehouse) -> RealWarehouse:
    """This module's real data: every third customer of the 2010-2011 export (see tests/conftest.py)."""
    return real_2011


AS_OF = dt.date(2011, 12, 9)


@pytest.fixture(scope="module")
def pipeline(
    spark: SparkSession, settings: Settings, real: RealWarehouse
) -> tuple[EnrichReport, FeatureReport, SegmentReport]:
    # the same run id as the ingest: one run of the whole pipeline (ingest and enrich both write items)
    enrich = run_enrich(real.store, settings.enrich, REAL_RUN)
    history = History.read(real.store, AS_OF)  # after enrich: the catalog with its categories
    features = run_features(real.store, history, settings.features, settings.enrich.n_categories, REAL_RUN)
    segments = run_segments(spark, real.store, settings.segments, AS_OF, REAL_RUN)
    return enrich, features, segments


def test_items_are_enriched(
    real: RealWarehouse, pipeline: tuple[EnrichReport, FeatureReport, SegmentReport]
) -> None:
    enrich = pipeline[0]
    items = real.store.read_table(S.ITEMS)
    products = items.filter(F.col(S.IS_PRODUCT) & F.col(S.TITLE).isNotNull())
    assert real.store.read_table(S.ITEM_EMBEDDINGS).count() == products.count() == enrich.embedded
    assert products.filter(F.col(S.CATEGORY_ID).isNull() | F.col(S.CATEGORY_LABEL).isNull()).count() == 0
    assert len(enrich.categories) == 24
    bands = {r.price_band: r["count"] for r in products.groupBy(S.PRICE_BAND).count().collect()}
    assert set(bands) <= {*S.PRICE_BANDS, None} and min(bands[b] for b in S.PRICE_BANDS) > 400
    candles = (
        items.filter(F.col(S.TITLE).contains("CANDLE"))
        .groupBy(S.CATEGORY_LABEL)
        .count()
        .orderBy(F.desc("count"))
    )
    top = candles.first()
    assert top is not None and "candle" in top[S.CATEGORY_LABEL]


def test_features_one_row_per_buyer(
    real: RealWarehouse, pipeline: tuple[EnrichReport, FeatureReport, SegmentReport]
) -> None:
    features = real.store.read_table(S.USER_FEATURES).filter(F.col(S.AS_OF) == AS_OF)
    buyers = (
        real.store.read_table(S.EVENTS)
        .filter(
            (F.col(S.EVENT_TYPE) == S.PURCHASE) & (F.col(S.EVENT_TS) < F.lit("2011-12-09").cast("timestamp"))
        )
        .select(S.USER_ID)
        .distinct()
        .count()
    )
    assert features.count() == features.select(S.USER_ID).distinct().count() == buyers == pipeline[1].users
    assert features.filter((F.col("recency_days") < 0) | (F.col("monetary") <= 0)).count() == 0
    assert pipeline[1].without_purchase == real.store.read_table(S.USERS).count() - buyers


def test_segments_and_profiles(
    real: RealWarehouse, pipeline: tuple[EnrichReport, FeatureReport, SegmentReport]
) -> None:
    report = pipeline[2]
    assert 3 <= report.fit.k <= 8 and sorted(report.fit.silhouette_by_k) == list(range(3, 9))
    assert report.fit.silhouette == max(report.fit.silhouette_by_k.values()) > 0.15
    profiles = real.store.read_table(S.SEGMENT_PROFILES).filter(F.col(S.AS_OF) == AS_OF).collect()
    assert len(profiles) == report.fit.k
    assert sum(p.size for p in profiles) == pipeline[1].users
    assert len({p.segment_label for p in profiles}) == report.fit.k
    assert any(p.segment_label == "high-value loyal" for p in profiles)
    segments = real.store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == AS_OF)
    assert segments.count() == pipeline[1].users
    assert segments.filter(F.col("pc1").isNull() | F.col("distance").isNull()).count() == 0
    assert report.plot is not None and Path(report.plot).stat().st_size > 20_000


def test_reuse_of_the_saved_model(
    spark: SparkSession,
    settings: Settings,
    real: RealWarehouse,
    pipeline: tuple[EnrichReport, FeatureReport, SegmentReport],
) -> None:
    before = {r.user_id: r.segment_id for r in real.store.read_table(S.USER_SEGMENTS).collect()}
    reuse = settings.segments.model_copy(update={"refit": "never"})
    again = run_segments(spark, real.store, reuse, AS_OF, "seg-run-2")
    assert not again.refitted and again.fit.run_id == REAL_RUN
    after = {r.user_id: r.segment_id for r in real.store.read_table(S.USER_SEGMENTS).collect()}
    assert after == before


@pytest.fixture(scope="module")
def candidates(
    settings: Settings,
    real: RealWarehouse,
    pipeline: tuple[EnrichReport, FeatureReport, SegmentReport],
) -> CandidateReport:
    return run_candidates(real.store, History.read(real.store, AS_OF), settings.candidates, REAL_RUN)


def test_candidate_invariants(real: RealWarehouse, settings: Settings, candidates: CandidateReport) -> None:
    table = real.store.read_table(S.CANDIDATES).filter(F.col(S.AS_OF) == AS_OF)
    assert candidates.users == real.store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == AS_OF).count()
    assert set(candidates.per_source) == {s for s, n in settings.candidates.limits.items() if n > 0}
    non_products = table.join(real.store.read_table(S.ITEMS).filter(~F.col(S.IS_PRODUCT)), S.ITEM_ID)
    assert non_products.count() == 0
    limits = settings.candidates.limits
    too_many = table.groupBy(S.USER_ID, "source").agg(
        F.count("*").alias("n"), F.max("source_rank").alias("r")
    )
    for row in too_many.collect():
        assert row.n == row.r <= limits[row.source]
    assert table.groupBy(S.USER_ID, "source", S.ITEM_ID).count().filter("count > 1").count() == 0
    assert table.filter(F.col("detail").isNull() | F.isnan("source_score")).count() == 0


@pytest.fixture(scope="module")
def scoring(settings: Settings, real: RealWarehouse, candidates: CandidateReport) -> ScoringReport:
    # the bi-encoder is off by default (no measured uplift); on here, with profiles cut at 48 tokens (96 by
    # default): the cost is one profile encoding per user (suite budget)
    short = settings.scoring.bi_encoder.model_copy(update={"enabled": True, "max_length": 48})
    on = settings.scoring.model_copy(update={"bi_encoder": short})
    return run_scoring(real.store, History.read(real.store, AS_OF), on, REAL_RUN)


def test_bi_encoder_scores_every_user_on_the_shortlist(
    real: RealWarehouse, settings: Settings, scoring: ScoringReport
) -> None:
    top_n = settings.scoring.bi_encoder.top_n
    scores = real.store.read_table(S.SCORES).filter(F.col(S.AS_OF) == AS_OF)
    assert set(scoring.per_scorer) == {"bi_encoder"}
    per_user = scores.groupBy(S.USER_ID).agg(
        F.count("*").alias("n"), F.countDistinct(S.ITEM_ID).alias("items")
    )
    users = real.store.read_table(S.CANDIDATES).filter(F.col(S.AS_OF) == AS_OF).select(S.USER_ID).distinct()
    assert per_user.count() == users.count()
    assert per_user.filter((F.col("n") != F.col("items")) | (F.col("n") > top_n)).count() == 0
    bounds = scores.agg(F.min("score").alias("lo"), F.max("score").alias("hi")).first()
    assert bounds is not None and -1.0 - 1e-6 <= bounds.lo < bounds.hi <= 1.0 + 1e-6
    assert scoring.per_scorer["bi_encoder"][0] == scores.count()


def learned_context(spark: SparkSession, settings: Settings, real: RealWarehouse) -> RunContext:
    """The run of AS_OF the ranker is trained in (one cut-off and fewer trees here, to keep the suite
    short)."""
    # the new-items model (off by default) on: with one cut-off it is the same fit, scored a second time
    tuned = settings.discriminator.model_copy(
        update={"cutoffs": 1, "n_estimators": 20, "new_items_model": True}
    )
    # the cut-off's stages (no scorer: off by default) with a smaller ALS and one k (the suite's budget)
    als = settings.candidates.als.model_copy(update={"max_iter": 5, "rank": 16})
    cheap = {
        "discriminator": tuned,
        "candidates": settings.candidates.model_copy(update={"als": als}),
        "segments": settings.segments.model_copy(update={"k_min": 4, "k_max": 4}),
    }
    return RunContext(
        spark,
        real.store,
        settings.model_copy(update=cheap),
        AS_OF,
        REAL_RUN,
        load_strategies(),
        context_for(AS_OF, 9, settings.features.hour_bands),
    )


@pytest.fixture(scope="module")
def learned(spark: SparkSession, settings: Settings, real: RealWarehouse, scoring: ScoringReport) -> str:
    """The learned ranker as `run` trains it: the stages run for the cut-off before, then the fit, then
    ranker_scores as of AS_OF."""
    return train_discriminator(learned_context(spark, settings, real))


def test_the_learned_ranker_scores_every_candidate(
    spark: SparkSession, real: RealWarehouse, settings: Settings, learned: str
) -> None:
    on_date = F.col(S.AS_OF) == AS_OF
    scores = real.store.read_table(S.RANKER_SCORES).filter(on_date)
    pairs = real.store.read_table(S.CANDIDATES).filter(on_date).select(S.USER_ID, S.ITEM_ID).distinct()
    assert scores.count() == pairs.count() == scores.select(S.USER_ID, S.ITEM_ID).distinct().count()
    assert scores.filter(F.col(S.LEARNED_SCORE).isNull()).count() == 0
    # the run scored the date's features as they were computed and kept none; evaluate writes them
    assert real.store.read_table(S.RANKER_FEATURES).filter(on_date).limit(1).count() == 0
    write_date_features(learned_context(spark, settings, real))
    features = real.store.read_table(S.RANKER_FEATURES).filter(on_date)
    # ... and the saved model scores them as the run did (a slice of the users)
    model = M.load(real.store.model_path(MODEL_KIND, real.store.latest_model(MODEL_KIND) or ""))
    some = features.filter(F.xxhash64(S.USER_ID) % 10 == 0)
    again = M.predict(model, some).select(S.USER_ID, S.ITEM_ID, F.col("score").alias("again"))
    both = again.join(scores, [S.USER_ID, S.ITEM_ID])
    assert both.count() == some.count() > 0
    assert both.filter(F.abs(F.col("again") - F.col(S.LEARNED_SCORE)) > 1e-9).count() == 0
    # the new-items model scores exactly the pairs the user never bought
    never = features.filter(F.col("ui_orders") == 0).select(S.USER_ID, S.ITEM_ID)
    new_scored = scores.filter(F.col(S.LEARNED_NEW_SCORE).isNotNull()).select(S.USER_ID, S.ITEM_ID)
    assert new_scored.exceptAll(never).count() == 0 and never.exceptAll(new_scored).count() == 0
    # the training cut-off's features carry labels from before AS_OF only
    (cutoff,) = training_cutoffs(AS_OF, settings.discriminator.model_copy(update={"cutoffs": 1}))
    labelled = real.store.read_table(S.RANKER_FEATURES).filter(F.col(S.AS_OF) == cutoff)
    assert (
        labelled.filter(F.col(S.LABEL).isNull()).count() == 0 and labelled.agg(F.sum(S.LABEL)).first()[0] > 0
    )
    assert "learned ranker" in learned and "top features" in learned


def test_a_cut_off_is_made_for_its_sample_and_never_listed_from_it(
    spark: SparkSession, settings: Settings, real: RealWarehouse, learned: str
) -> None:
    (cutoff,) = training_cutoffs(AS_OF, settings.discriminator.model_copy(update={"cutoffs": 1}))
    context = context_for(cutoff, 9, settings.features.hour_bands)
    ctx = RunContext(spark, real.store, settings, cutoff, "lists-of-a-cut-off", load_strategies(), context)
    version = real.store.version(S.RECOMMENDATIONS)
    partial = f"'user_segments', 'candidates' as of {cutoff} .* its sample"
    with pytest.raises(PartialInputError, match=partial):
        run_stages(ctx, ["ranking"])
    assert real.store.version(S.RECOMMENDATIONS) == version
    with pytest.raises(PartialInputError, match=f"'user_features' as of {cutoff}"):
        run_stages(ctx, ["segments", "candidates"])  # segments would be the sample's again

    # the cut-off's features and segments were made for the users its candidates are for, no one else
    def users(table: str, day: dt.date) -> set[str]:
        on_day = real.store.read_table(table).filter(F.col(S.AS_OF) == day)
        return {r[0] for r in on_day.select(S.USER_ID).distinct().collect()}

    sample = users(S.CANDIDATES, cutoff)
    assert users(S.USER_FEATURES, cutoff) == users(S.USER_SEGMENTS, cutoff) == sample
    # nothing the ranker reads comes from the cut-off's segments (the defaults): one segment, no fit
    segments = real.store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == cutoff)
    assert segments.select(S.SEGMENT_ID, S.SEGMENT_LABEL).distinct().collect() == [(0, UNSEGMENTED)]
    assert f"segments as of {cutoff}: not fitted" in learned
    assert 100 < len(sample) < len(users(S.USER_FEATURES, AS_OF))


@pytest.fixture(scope="module")
def ranking(spark: SparkSession, settings: Settings, real: RealWarehouse, learned: str) -> RankingReport:
    ctx = context_for(AS_OF, 9, settings.features.hour_bands)
    history = History.read(real.store, AS_OF)
    return run_ranking(spark, real.store, history, load_strategies(), ctx, settings.ranking.k, REAL_RUN)


def test_recommendation_invariants(real: RealWarehouse, settings: Settings, ranking: RankingReport) -> None:
    k = settings.ranking.k
    recs = real.store.read_table(S.RECOMMENDATIONS).filter(F.col(S.AS_OF) == AS_OF)
    per_user = recs.groupBy(S.USER_ID).agg(
        F.count("*").alias("n"),
        F.countDistinct(S.ITEM_ID).alias("items"),
        F.min("rank").alias("lo"),
        F.max("rank").alias("hi"),
    )
    eligible = real.store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == AS_OF).count()
    served = per_user.count()
    assert ranking.users == eligible and served >= eligible * 0.99
    bad = per_user.filter((F.col("n") != F.col("items")) | (F.col("lo") != 1) | (F.col("hi") != F.col("n")))
    assert bad.count() == 0  # no duplicates, ranks 1..n
    # every user gets k unless fewer items are eligible; those (none included) are counted
    assert per_user.filter(F.col("n") < k).count() + (eligible - served) == ranking.short_lists
    assert ranking.short_lists < eligible * 0.01
    non_products = recs.join(real.store.read_table(S.ITEMS).filter(~F.col(S.IS_PRODUCT)), S.ITEM_ID)
    assert non_products.count() == 0
    assert recs.filter(F.col("explanation").isNull() | (F.size("sources") == 0)).count() == 0
    # one product is one id: no list holds the same code twice in any spelling
    spelled = recs.groupBy(S.USER_ID).agg(F.countDistinct(F.upper(F.trim(S.ITEM_ID))).alias("codes"))
    assert spelled.join(per_user, S.USER_ID).filter(F.col("codes") != F.col("n")).count() == 0
    # the seasonal strategy features one campaign item (1 slot) in every list it makes
    campaign = (
        recs.filter(F.col("strategy_id") == "seasonal")
        .groupBy(S.USER_ID)
        .agg(F.sum(F.array_contains("sources", "campaign").cast("int")).alias("featured"))
    )
    assert campaign.count() > 0 and campaign.filter(F.col("featured") != 1).count() == 0
    assert abs(sum(ranking.strategy_share.values()) - 1) < 1e-9


def test_rerun_of_the_run_id_adds_nothing(
    spark: SparkSession, settings: Settings, real: RealWarehouse, ranking: RankingReport
) -> None:
    version = real.store.version(S.RECOMMENDATIONS)
    ctx = context_for(AS_OF, 9, settings.features.hour_bands)
    history = History.read(real.store, AS_OF)
    again = run_ranking(spark, real.store, history, load_strategies(), ctx, settings.ranking.k, REAL_RUN)
    assert again.write.skipped and real.store.version(S.RECOMMENDATIONS) == version


def test_the_new_items_mode_never_lists_a_past_purchase(
    spark: SparkSession, settings: Settings, real: RealWarehouse, ranking: RankingReport
) -> None:
    ctx = context_for(AS_OF, 9, settings.features.hour_bands)
    book = new_items_book(load_strategies())
    history = History.read(real.store, AS_OF)
    report = run_ranking(spark, real.store, history, book, ctx, settings.ranking.k, "new-items-run")
    recs = real.store.read_table(S.RECOMMENDATIONS).filter(F.col(S.AS_OF) == AS_OF)
    assert recs.select(S.RUN_ID).distinct().collect()[0][0] == "new-items-run"
    bought = bought_pairs(history.purchases())
    assert recs.join(bought, [S.USER_ID, S.ITEM_ID]).count() == 0
    assert report.short_lists < report.users * 0.01
