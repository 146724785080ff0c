"""Item enrichment: the offline encoder (pure and through Spark), categories, labels, price bands."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from genre_spark.config import Settings
from genre_spark.enrich import category_labels, embed_items, encoder_spec, fit_categories, price_bands
from genre_spark.errors import ConfigError
from genre_spark.scoring.models import ModelSpec, embed, resolve_model_path

TITLES = [
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "RED HANGING HEART T-LIGHT HOLDER",
    "PARTY BUNTING",
    "SPACEBOY LUNCH BOX",
    "DOLLY GIRL LUNCH BOX",
    "X",
]


@pytest.fixture(scope="module")
def spec(settings: Settings) -> ModelSpec:
    return encoder_spec(settings.enrich)


def test_encoder_is_offline_normalised_and_keeps_order(spec: ModelSpec) -> None:
    emb = embed(TITLES, spec)
    assert emb.shape == (len(TITLES), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.8 > sims[0, 2]  # two heart holders are closer than a holder and bunting
    assert sims[3, 4] > sims[3, 2]
    # the length sort inside a batch must not reorder the output
    reversed_emb = embed(TITLES[::-1], spec)
    np.testing.assert_allclose(reversed_emb[::-1], emb, atol=1e-5)
    small_batches = embed(TITLES, ModelSpec(spec.model_path, 2, spec.max_length, "cpu", "float32"))
    np.testing.assert_allclose(small_batches, emb, atol=1e-5)


def test_spark_udf_matches_the_pure_function(spark: SparkSession, spec: ModelSpec) -> None:
    items = spark.createDataFrame(
        [(f"i{i}", t, True) for i, t in enumerate(TITLES)] + [("p", "POSTAGE", False), ("n", None, True)],
        "item_id string, title string, is_product boolean",
    )
    rows = {r.item_id: r.embedding for r in embed_items(items, spec, "minilm").collect()}
    assert set(rows) == {f"i{i}" for i in range(len(TITLES))}  # non-products and untitled items skipped
    expected = embed(TITLES, spec)
    for i in range(len(TITLES)):
        np.testing.assert_allclose(np.array(rows[f"i{i}"]), expected[i], atol=1e-5)


def test_missing_model_fails_naming_owner_and_path(tmp_path: object) -> None:
    with pytest.raises(
        ConfigError, match=r"enrich.encoder.model: model path '/no/such/model' is not a folder"
    ):
        resolve_model_path("/no/such/model", owner="enrich.encoder.model")


def test_categories_are_stable_across_reruns(spark: SparkSession) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 8))
    rows = [
        (f"i{c}_{j}", (centres[c] + rng.normal(0, 0.05, 8)).astype(float).tolist())
        for c in range(3)
        for j in range(20)
    ]
    emb = spark.createDataFrame(rows, "item_id string, embedding array<float>")
    first = fit_categories(emb, 3, seed=42, partitions=4)
    second = fit_categories(emb.orderBy(F.rand(5)), 3, seed=42, partitions=4)
    assert_df_equality(first, second, ignore_row_order=True)
    groups = (
        first.withColumn("blob", F.substring_index("item_id", "_", 1))
        .groupBy("blob")
        .agg(F.countDistinct("category_id").alias("n"))
    )
    assert {r.n for r in groups.collect()} == {1}  # each blob is one category


def test_category_labels_are_distinctive_terms(spark: SparkSession) -> None:
    titled = spark.createDataFrame(
        [
            (0, "white heart candle holder"),
            (0, "red heart candle holder"),
            (0, "heart candle"),
            (1, "spaceboy lunch box"),
            (1, "dolly girl lunch box"),
            (1, "lunch bag heart"),
        ],
        "category_id int, title string",
    )
    labels = {r.category_id: r.category_label for r in category_labels(titled, 2, 3).collect()}
    assert labels == {0: "candle / holder", 1: "lunch / box"}  # "heart" is everywhere: low idf


def test_price_bands_are_quantiles_of_products(spark: SparkSession) -> None:
    items = spark.createDataFrame(
        [(f"i{p}", float(p), True) for p in range(1, 11)] + [("post", 18.0, False), ("free", 0.0, True)],
        "item_id string, unit_price double, is_product boolean",
    )
    bands = {r.item_id: r.price_band for r in price_bands(items).collect()}
    assert bands == {
        "i1": "budget",
        "i2": "budget",
        "i3": "low",
        "i4": "low",
        "i5": "mid",
        "i6": "mid",
        "i7": "high",
        "i8": "high",
        "i9": "premium",
        "i10": "premium",
    }
