"""Segmentation: k by silhouette on known blobs, PCA parity with numpy, save/reload, refit modes, labels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCA
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame, SparkSession

from genre_spark import schemas as S
from genre_spark.config import LabelRule, SegmentSettings, Settings
from genre_spark.errors import GenreSparkError
from genre_spark.segments import (
    assign_segments,
    choose_components,
    fit_segmentation,
    label_segments,
    load_or_fit,
)
from genre_spark.storage import TableStore

FEATURES = ["recency_days", "frequency", "monetary", "return_rate"]
AS_OF = dt.date(2011, 12, 9)


def blobs(spark: SparkSession, k: int, per_blob: int = 60, seed: int = 7) -> DataFrame:
    """Users in k well separated groups over four features (monetary heavy-tailed, like real spend)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-1, 1, size=(k, 4)) * 12
    rows = []
    for c in range(k):
        for i in range(per_blob):
            x = centres[c] + rng.normal(0, 0.4, 4)
            rows.append(
                (f"u{c}_{i}", AS_OF, float(x[0]), float(x[1]), float(np.exp(x[2] / 4 + 5)), float(x[3]))
            )
    return spark.createDataFrame(
        rows,
        "user_id string, as_of date, recency_days double, frequency double, monetary double, "
        "return_rate double",
    )


@pytest.fixture()
def seg(settings: Settings) -> SegmentSettings:
    return settings.segments.model_copy(
        update={
            "features": FEATURES,
            "log_features": ["monetary"],
            "labels": [],
            "k_min": 2,
            "k_max": 6,
            "pca_components": None,
            "pca_variance": 0.95,
        }
    )


@pytest.mark.parametrize("k", [3, 5])
def test_silhouette_picks_the_true_k(spark: SparkSession, seg: SegmentSettings, k: int) -> None:
    fit = fit_segmentation(blobs(spark, k), seg, "run")
    assert fit.k == k, fit.silhouette_by_k
    assert sorted(fit.silhouette_by_k) == list(range(2, 7))
    assert fit.silhouette > 0.7


def test_sample_bounds_the_silhouette_work(spark: SparkSession, seg: SegmentSettings) -> None:
    small = seg.model_copy(update={"silhouette_sample": 101})
    fit = fit_segmentation(blobs(spark, 3, per_blob=200), small, "run")
    assert fit.k == 3
    assigned = assign_segments(fit.model, blobs(spark, 3, per_blob=200))
    assert assigned.count() == 600  # the final fit and assignment use every user


def test_a_fixed_k_fits_once_and_reports_its_silhouette(spark: SparkSession, seg: SegmentSettings) -> None:
    users = blobs(spark, 3)
    fixed = fit_segmentation(users, seg.model_copy(update={"k_min": 3, "k_max": 3}), "run")
    assert fixed.k == 3 and list(fixed.silhouette_by_k) == [3] and fixed.silhouette > 0.7
    # the same final model as when k is searched and 3 wins: the search only picks k
    searched = fit_segmentation(users, seg.model_copy(update={"k_min": 2, "k_max": 3}), "run")
    assert searched.k == 3
    assert_df_equality(
        assign_segments(fixed.model, users), assign_segments(searched.model, users), ignore_row_order=True
    )


def test_saved_model_reloads_with_identical_assignments(
    spark: SparkSession, seg: SegmentSettings, tmp_path: Path
) -> None:
    users = blobs(spark, 4)
    fit = fit_segmentation(users, seg.model_copy(update={"k_min": 4, "k_max": 4}), "run")
    fit.model.write().save(str(tmp_path / "model"))
    reloaded = PipelineModel.load(str(tmp_path / "model"))
    assert_df_equality(
        assign_segments(fit.model, users), assign_segments(reloaded, users), ignore_row_order=True
    )


def test_pca_explained_variance_matches_numpy(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4)) @ np.array([[3, 0, 0, 0], [1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 0.5, 0.2]])
    df = spark.createDataFrame([(Vectors.dense(r.tolist()),) for r in x], ["v"])
    model = PCA(k=3, inputCol="v", outputCol="p").fit(df)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(model.explainedVariance.toArray(), (eig / eig.sum())[:3], rtol=1e-8)


def test_choose_components() -> None:
    assert choose_components([0.5, 0.3, 0.15, 0.05], 0.8) == 2
    assert choose_components([0.5, 0.3, 0.15, 0.05], 0.81) == 3
    assert choose_components([0.9, 0.1], 0.5) == 2  # at least two, for the PC1/PC2 plot
    assert choose_components([0.4, 0.3, 0.3], 1.0) == 3


def test_refit_modes(spark: SparkSession, seg: SegmentSettings, store: TableStore) -> None:
    users = blobs(spark, 3)
    seg = seg.model_copy(update={"k_min": 3, "k_max": 3})  # one KMeans fit per refit
    with pytest.raises(GenreSparkError, match="refit is 'never'"):
        load_or_fit(store, users, seg.model_copy(update={"refit": "never"}), "r0")
    first, fitted = load_or_fit(store, users, seg.model_copy(update={"refit": "if_missing"}), "r1")
    assert fitted and store.latest_model("segments") == "r1"
    again, refitted = load_or_fit(store, users, seg.model_copy(update={"refit": "if_missing"}), "r2")
    assert not refitted and again.run_id == "r1" and again.k == first.k
    assert_df_equality(
        assign_segments(first.model, users), assign_segments(again.model, users), ignore_row_order=True
    )
    always = seg.model_copy(update={"refit": "always"})
    _, forced = load_or_fit(store, users, always, "r3")
    assert forced and store.latest_model("segments") == "r3"
    # a training cut-off's fit (on its sample) serves its own date only
    _, unpublished = load_or_fit(store, users, always, "r4", publish=False)
    assert unpublished and store.latest_model("segments") == "r3"


def test_labels_first_matching_rule_and_unique() -> None:
    rules = [
        LabelRule(label="high-value loyal", when={"monetary": (0.5, None), "frequency": (0.5, None)}),
        LabelRule(label="new", when={"tenure_days": (None, -0.8)}),
        LabelRule(label="lapsing", when={"recency_days": (0.5, None)}),
    ]
    z = {
        0: {"monetary": 1.2, "frequency": 0.9, "recency_days": 0.7},  # both rules 1 and 3: the first wins
        1: {"tenure_days": -1.5},
        2: {"recency_days": 0.6},
        3: {"recency_days": 0.9, "monetary": 0.1},
        4: {"monetary": 0.4, "frequency": 3.0},  # misses the money bound
    }
    assert label_segments(z, rules, "regulars") == {
        0: "high-value loyal",
        1: "new",
        2: "lapsing",
        3: "lapsing (2)",
        4: "regulars",
    }


def test_segment_contracts_exist() -> None:
    for table in (S.USER_SEGMENTS, S.SEGMENT_PROFILES):
        assert S.contract(table) is not None
