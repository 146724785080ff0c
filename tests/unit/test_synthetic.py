"""The synthetic generator: its pure helpers, and that generated data reproduces the fitted profile."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark import synthetic as syn


def export_lines(raw: DataFrame) -> DataFrame:
    """Product lines of known customers in a generated export, with the contract's column names
    (what ingest would keep), for :func:`shape_statistics`."""
    c = syn.COLUMNS
    invoice = F.col(c[S.ORDER_ID])
    return raw.where(
        F.col(f"`{c[S.USER_ID]}`").isNotNull() & (F.col(c[S.ITEM_ID]) != syn.NON_PRODUCT_CODE)
    ).select(
        F.col(f"`{c[S.USER_ID]}`").alias(S.USER_ID),
        invoice.alias(S.ORDER_ID),
        F.col(c[S.ITEM_ID]).alias(S.ITEM_ID),
        F.when(invoice.startswith("C"), F.lit(S.RETURN)).otherwise(F.lit(S.PURCHASE)).alias(S.EVENT_TYPE),
        F.to_timestamp(c[S.EVENT_TS], "yyyy-MM-dd HH:mm:ss").alias(S.EVENT_TS),
    )


def test_gini_of_equal_counts_is_zero_and_of_one_item_approaches_one():
    assert syn.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert syn.gini(np.array([0] * 99 + [100])) == pytest.approx(0.99)
    assert syn.gini(np.array([1, 2, 3, 4])) == pytest.approx(0.25)


def test_popularity_inverse_cdf_maps_purchase_shares_to_ranks():
    # item 0 holds half the purchases: the first half of the levels land on rank fraction [0, 1/4]
    inverse = syn.popularity_inverse_cdf(np.array([50, 20, 20, 10]), levels=10)
    assert inverse[0] == 0.0 and inverse[-1] == 1.0
    assert inverse[5] == pytest.approx(0.25)
    assert inverse == sorted(inverse)


def test_pool_parameters_reproduce_the_repeat_statistics():
    params = syn.pool_parameters(0.37, 0.15)
    r, x = params["pool_ratio"], params["pool_draw"] / params["pool_ratio"]
    assert r * (x - 1 + math.exp(-x)) == pytest.approx(0.37, rel=1e-6)
    assert r * (1 - math.exp(-x) - x * math.exp(-x)) == pytest.approx(0.15, rel=1e-6)


def test_categorical_draws_follow_the_weights(spark):
    weights = [0.5, 0.0, 0.3, 0.2]
    draws = spark.range(20_000).select(
        syn._categorical(weights, syn._uniform("t", F.col("id"), seed=1)).alias("k")
    )
    counts = {r["k"]: r["count"] for r in draws.groupBy("k").count().collect()}
    assert 1 not in counts  # a zero weight is never drawn
    for k, w in enumerate(weights):
        assert counts.get(k, 0) / 20_000 == pytest.approx(w, abs=0.02)


def test_packaged_profile_loads_and_scales_the_catalog():
    profile = syn.load_profile()
    assert profile.catalog_size(profile.sample_users) == profile.sample_items
    assert profile.catalog_size(1_000_000) > profile.catalog_size(100_000) > profile.sample_items


@pytest.fixture(scope="module")
def generated(spark):
    return syn.generate_events(spark, syn.load_profile(), 1_500, seed=3).cache()


def test_generated_data_reproduces_the_fitted_profile(generated):
    profile = syn.load_profile()
    measured = syn.shape_statistics(export_lines(generated))
    expected = profile.statistics
    for name in ("item_gini", "mean_lines_per_order", "mean_orders_per_user", "repeat_share"):
        assert measured[name] == pytest.approx(expected[name], rel=0.10), name
    assert measured["return_share"] == pytest.approx(expected["return_share"], rel=0.25)
    anonymous = generated.where(F.col("`Customer ID`").isNull()).count() / generated.count()
    assert anonymous == pytest.approx(profile.anonymous_share, rel=0.15)


def test_generation_is_determined_by_users_and_seed(spark):
    profile = syn.load_profile()
    first = syn.generate_events(spark, profile, 300, seed=3).cache()  # compared twice: generated once
    again = syn.generate_events(spark, profile, 300, seed=3).repartition(3)
    assert first.count() > 10_000 and first.exceptAll(again).count() == 0
    assert first.exceptAll(syn.generate_events(spark, profile, 300, seed=4)).count() > 0
    first.unpersist()


def test_the_catalog_size_is_a_knob(spark):
    profile = syn.load_profile()
    wide = syn.generate_events(spark, profile, 50, seed=3, items=50_000)
    index = F.regexp_extract("StockCode", r"^S(\d+)$", 1).try_cast("int")
    row = wide.where(index.isNotNull()).agg(F.countDistinct(index), F.max(index)).first()
    # the same popularity curve over 50,000 items: some bought beyond the default catalog (3,000-odd)
    assert row is not None and profile.catalog_size(50) <= row[1] < 50_000 and row[0] > 500
    with pytest.raises(ValueError, match="at least 1 item"):
        syn.generate_events(spark, profile, 50, seed=3, items=0)
