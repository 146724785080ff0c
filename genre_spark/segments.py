"""User segments: one MLlib pipeline (log1p -> VectorAssembler -> StandardScaler -> PCA -> KMeans),
k chosen by silhouette on a bounded sample, labelled segment profiles, and a PC1/PC2 picture."""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import PCA, PCAModel, SQLTransformer, StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import LabelRule, SegmentSettings
from genre_spark.errors import GenreSparkError
from genre_spark.storage import TableStore, WriteResult

MODEL_KIND = "segments"
SCALED, PROJECTED, CLUSTER = "_scaled", "_pca", "_cluster"


@dataclass(frozen=True)
class SegmentFit:
    model: PipelineModel
    k: int
    silhouette_by_k: dict[int, float]
    explained_variance: list[float]
    run_id: str  # the run that fitted the model

    @property
    def silhouette(self) -> float:
        return self.silhouette_by_k.get(self.k, float("nan"))


@dataclass(frozen=True)
class SegmentReport:
    as_of: dt.date
    fit: SegmentFit
    refitted: bool
    segments: list[tuple[int, str, int]]  # (segment_id, label, size): k rows
    plot: str | None
    writes: list[WriteResult]

    def format(self) -> str:
        tried = ", ".join(f"k={k}: {s:.3f}" for k, s in sorted(self.fit.silhouette_by_k.items()))
        source = "fitted now" if self.refitted else f"reused from run {self.fit.run_id}"
        lines = [
            f"segments as of {self.as_of}: k={self.fit.k} (silhouette {self.fit.silhouette:.3f}; {source}); "
            f"PCA {len(self.fit.explained_variance)} components, "
            f"{sum(self.fit.explained_variance):.0%} of the variance",
            f"  silhouette by k: {tried}" if tried else "  silhouette by k: (not recomputed)",
        ]
        lines += [f"  segment {sid}: {size:>6,} users  {label}" for sid, label, size in self.segments]
        if self.plot:
            lines.append(f"  plot: {self.plot}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- fitting


def _prep_stages(features: Sequence[str], log_features: Sequence[str]) -> list[Any]:
    """log1p of heavy-tailed columns (as a saved SQL stage), assembled and standardised."""
    logged = ", ".join(f"log1p(greatest(`{f}`, 0D)) AS `_log_{f}`" for f in log_features)
    inputs = [f"_log_{f}" if f in log_features else f for f in features]
    statement = f"SELECT *, {logged} FROM __THIS__" if logged else "SELECT * FROM __THIS__"
    return [
        SQLTransformer(statement=statement),
        VectorAssembler(inputCols=inputs, outputCol="_raw_features", handleInvalid="keep"),
        StandardScaler(inputCol="_raw_features", outputCol=SCALED, withMean=True, withStd=True),
    ]


def choose_components(explained_variance: Sequence[float], target: float) -> int:
    """Smallest number of principal components whose explained variance reaches ``target`` (>= 2)."""
    total = 0.0
    for i, share in enumerate(explained_variance, start=1):
        total += share
        if total >= target - 1e-12:
            return max(i, 2)
    return max(len(explained_variance), 2)


def _kmeans(k: int, seed: int, max_iter: int) -> KMeans:
    return KMeans(k=k, seed=seed, maxIter=max_iter, featuresCol=PROJECTED, predictionCol=CLUSTER)


def silhouette(model: KMeansModel, sample: DataFrame) -> float:
    """Silhouette (squared Euclidean, MLlib ClusteringEvaluator) of ``model``'s clusters of ``sample``."""
    evaluator = ClusteringEvaluator(featuresCol=PROJECTED, predictionCol=CLUSTER)
    return float(evaluator.evaluate(model.transform(sample)))


def silhouette_by_k(sample: DataFrame, ks: Sequence[int], seed: int, max_iter: int) -> dict[int, float]:
    """Silhouette of KMeans fits on ``sample``, per k."""
    return {k: silhouette(_kmeans(k, seed, max_iter).fit(sample), sample) for k in ks}


def fit_segmentation(features: DataFrame, settings: SegmentSettings, run_id: str) -> SegmentFit:
    # in user order: the seeded sample (silhouette) and the seeded KMeans see the same rows in the same
    # partitions in every run, whatever order the table's files came in
    features = features.orderBy(S.USER_ID)
    n_users = features.count()
    if n_users <= settings.k_min:
        raise GenreSparkError(
            f"segments: {n_users} users with features, too few for k >= {settings.k_min} (segments.k_min)"
        )
    prep = Pipeline(stages=_prep_stages(settings.features, settings.log_features)).fit(features)
    scaled = prep.transform(features).select(SCALED).cache()
    try:
        n_features = len(settings.features)
        if settings.pca_components is not None:
            m = min(settings.pca_components, n_features)
        else:
            full = PCA(k=n_features, inputCol=SCALED, outputCol=PROJECTED).fit(scaled)
            m = choose_components(full.explainedVariance.toArray().tolist(), settings.pca_variance)
        pca: PCAModel = PCA(k=m, inputCol=SCALED, outputCol=PROJECTED).fit(scaled)
        projected = pca.transform(scaled).select(PROJECTED)
        fraction = min(1.0, settings.silhouette_sample / n_users)
        sample = projected.sample(fraction=fraction, seed=settings.seed).cache()
        try:
            n_sample = sample.count()
            ks = [k for k in range(settings.k_min, settings.k_max + 1) if k < n_sample]
            if not ks:
                raise GenreSparkError(
                    f"segments: {n_sample} users in the sample, too few for k >= {settings.k_min}"
                )
            # one k to choose from: no fit on the sample, the silhouette is the final model's on it
            scores = silhouette_by_k(sample, ks, settings.seed, settings.max_iter) if len(ks) > 1 else {}
            best = max(scores, key=lambda k: (scores[k], -k)) if scores else ks[0]
            # The final KMeans uses every user; the sample only chose k.
            kmeans: KMeansModel = _kmeans(best, settings.seed, settings.max_iter).fit(projected)
            if not scores:
                scores = {best: silhouette(kmeans, sample)}
        finally:
            sample.unpersist()
    finally:
        scaled.unpersist()
    model = PipelineModel(stages=[*prep.stages, pca, kmeans])
    return SegmentFit(model, best, scores, pca.explainedVariance.toArray().tolist(), run_id)


def assign_segments(model: PipelineModel, features: DataFrame) -> DataFrame:
    """user_id, as_of, segment_id, pc1, pc2, distance (Euclidean, to the centroid in PCA space)."""
    kmeans = model.stages[-1]
    assert isinstance(kmeans, KMeansModel)
    spark = features.sparkSession
    centers = spark.createDataFrame(  # k rows
        [(i, [float(x) for x in c]) for i, c in enumerate(kmeans.clusterCenters())],
        "sid int, center array<double>",
    )
    scored = model.transform(features).select(
        S.USER_ID,
        S.AS_OF,
        F.col(CLUSTER).cast("int").alias(S.SEGMENT_ID),
        vector_to_array(F.col(PROJECTED)).alias("_p"),
    )
    squared = F.aggregate(
        F.zip_with("_p", "center", lambda a, b: (a - b) * (a - b)), F.lit(0.0), lambda acc, x: acc + x
    )
    return scored.join(F.broadcast(centers), F.col(S.SEGMENT_ID) == F.col("sid")).select(
        S.USER_ID,
        S.AS_OF,
        S.SEGMENT_ID,
        F.col("_p")[0].alias("pc1"),
        F.col("_p")[1].alias("pc2"),
        F.sqrt(squared).alias("distance"),
    )


# --------------------------------------------------------------------------- profiles and labels


def segment_statistics(
    features: DataFrame, assigned: DataFrame, names: Sequence[str], log_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Per segment: size, means and medians (raw units), and z-scores of the segment means against all
    users, on the model's scale (log1p for heavy-tailed features, so one big spender does not hide a
    segment's shift). k rows reach the driver."""

    def scaled(f: str) -> Column:
        return F.log1p(F.greatest(F.col(f), F.lit(0.0))) if f in log_names else F.col(f).cast("double")

    overall = features.agg(
        *[F.avg(scaled(f)).alias(f"m_{f}") for f in names],
        *[F.stddev_pop(scaled(f)).alias(f"s_{f}") for f in names],
    ).first()
    assert overall is not None
    joined = features.join(assigned.select(S.USER_ID, S.SEGMENT_ID), S.USER_ID)
    rows = (
        joined.groupBy(S.SEGMENT_ID)
        .agg(
            F.count("*").alias("size"),
            *[F.avg(f).alias(f"mean_{f}") for f in names],
            *[F.avg(scaled(f)).alias(f"scaled_{f}") for f in names],
            *[F.percentile_approx(f, 0.5, 10_000).cast("double").alias(f"median_{f}") for f in names],
        )
        .orderBy(S.SEGMENT_ID)
        .collect()  # one row per segment
    )
    stats = []
    for row in rows:
        z = {}
        for f in names:
            sd = overall[f"s_{f}"] or 0.0
            z[f] = 0.0 if sd == 0 else (float(row[f"scaled_{f}"]) - float(overall[f"m_{f}"])) / sd
        stats.append(
            {
                S.SEGMENT_ID: int(row[S.SEGMENT_ID]),
                "size": int(row["size"]),
                "means": {f: float(row[f"mean_{f}"]) for f in names},
                "medians": {f: float(row[f"median_{f}"]) for f in names},
                "z_scores": z,
            }
        )
    return stats


def label_segments(
    z_scores: Mapping[int, Mapping[str, float]],
    rules: Sequence[LabelRule],
    default: str,
    sizes: Mapping[int, int] | None = None,
) -> dict[int, str]:
    """First matching rule per segment; repeated labels get ' (2)', ' (3)' from the largest segment down
    (ties: segment order), so a refit that only renumbers the segments gives each the same label (the key
    of ``strategy_state``)."""
    labels: dict[int, str] = {}
    for sid in sorted(z_scores):
        z = z_scores[sid]
        label = default
        for rule in rules:
            if all(
                (lo is None or z.get(f, 0.0) >= lo) and (hi is None or z.get(f, 0.0) <= hi)
                for f, (lo, hi) in rule.when.items()
            ):
                label = rule.label
                break
        labels[sid] = label
    seen: dict[str, int] = {}
    for sid in sorted(labels, key=lambda s: (-(sizes or {}).get(s, 0), s)):
        seen[labels[sid]] = seen.get(labels[sid], 0) + 1
        if seen[labels[sid]] > 1:
            labels[sid] = f"{labels[sid]} ({seen[labels[sid]]})"
    return labels


# --------------------------------------------------------------------------- the stage


def load_or_fit(
    store: TableStore, features: DataFrame, settings: SegmentSettings, run_id: str, publish: bool = True
) -> tuple[SegmentFit, bool]:
    """The segmentation model ``settings.refit`` asks for, and whether it was fitted now. A fit is saved
    and, when ``publish``, becomes the latest model later runs reuse (a training cut-off's fit on its
    sample is not published)."""
    latest = store.latest_model(MODEL_KIND)
    if settings.refit == "never" and latest is None:
        raise GenreSparkError(
            "segments.refit is 'never' but no saved segmentation model exists; run with refit: always"
        )
    if settings.refit == "always" or latest is None:
        fit = fit_segmentation(features, settings, run_id)
        fit.model.write().overwrite().save(store.model_path(MODEL_KIND, run_id))
        if publish:
            store.set_latest_model(MODEL_KIND, run_id)
        return fit, True
    model = PipelineModel.load(store.model_path(MODEL_KIND, latest))
    kmeans, pca = model.stages[-1], model.stages[-2]
    assert isinstance(kmeans, KMeansModel) and isinstance(pca, PCAModel)
    return SegmentFit(model, kmeans.getK(), {}, pca.explainedVariance.toArray().tolist(), latest), False


UNSEGMENTED = "unsegmented"  # the label of a training cut-off's one segment (write_unsegmented)


def write_unsegmented(store: TableStore, as_of: dt.date, run_id: str) -> WriteResult:
    """``user_segments`` of a training cut-off whose segments nothing reads (the ranker leaves the segment
    feature group out and the segment-popularity source is off): the users of its features in one segment,
    0, without a fit, projection, profile or plot. Its candidates and features still find their users and
    a strategy per segment here."""
    features = store.read_table(S.USER_FEATURES).filter(F.col(S.AS_OF) == F.lit(as_of))
    none = F.lit(None).cast("double")
    rows = features.select(
        S.USER_ID,
        S.AS_OF,
        F.lit(0).alias(S.SEGMENT_ID),
        F.lit(UNSEGMENTED).alias(S.SEGMENT_LABEL),
        none.alias("pc1"),
        none.alias("pc2"),
        none.alias("distance"),
        F.lit(None).cast("string").alias("model_run_id"),
    )
    return store.replace_date(rows, S.USER_SEGMENTS, as_of=as_of, run_id=run_id, stage="segments")


def run_segments(
    spark: SparkSession,
    store: TableStore,
    settings: SegmentSettings,
    as_of: dt.date,
    run_id: str,
    publish: bool = True,
) -> SegmentReport:
    features = store.read_table(S.USER_FEATURES).filter(F.col(S.AS_OF) == F.lit(as_of))
    fit, refitted = load_or_fit(store, features, settings, run_id, publish)
    assigned = assign_segments(fit.model, features).cache()
    try:
        stats = segment_statistics(features, assigned, settings.features, settings.log_features)
        labels = label_segments(
            {s[S.SEGMENT_ID]: s["z_scores"] for s in stats},
            settings.labels,
            settings.default_label,
            {s[S.SEGMENT_ID]: s["size"] for s in stats},
        )
        total = sum(s["size"] for s in stats)
        label_df = spark.createDataFrame(list(labels.items()), "segment_id int, segment_label string")
        segments = assigned.join(F.broadcast(label_df), S.SEGMENT_ID).withColumn(
            "model_run_id", F.lit(fit.run_id)
        )
        profiles = spark.createDataFrame(
            [
                (
                    as_of,
                    run_id,
                    s[S.SEGMENT_ID],
                    labels[s[S.SEGMENT_ID]],
                    s["size"],
                    s["size"] / total,
                    s["means"],
                    s["medians"],
                    s["z_scores"],
                    fit.k,
                    None if math.isnan(fit.silhouette) else fit.silhouette,
                    fit.silhouette_by_k,
                    len(fit.explained_variance),
                    fit.explained_variance,
                    fit.run_id,
                )
                for s in stats
            ],
            S.CONTRACTS[S.SEGMENT_PROFILES],
        )
        write = functools.partial(store.replace_date, as_of=as_of, run_id=run_id, stage="segments")
        writes = [
            write(segments, S.USER_SEGMENTS),
            write(profiles, S.SEGMENT_PROFILES),
        ]
        plot = plot_segments(store, segments, total, fit, labels, as_of, settings.plot_sample, settings.seed)
    finally:
        assigned.unpersist()
    return SegmentReport(
        as_of,
        fit,
        refitted,
        [(s[S.SEGMENT_ID], labels[s[S.SEGMENT_ID]], s["size"]) for s in stats],
        plot,
        writes,
    )


def plot_segments(
    store: TableStore,
    segments: DataFrame,
    n: int,
    fit: SegmentFit,
    labels: Mapping[int, str],
    as_of: dt.date,
    sample_size: int,
    seed: int,
) -> str | None:
    """PNG: a bounded sample of users on PC1/PC2 coloured by segment, and silhouette against k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fraction = min(1.0, sample_size / max(n, 1))
    # about sample_size points (segments.plot_sample)
    points: Any = segments.sample(fraction=fraction, seed=seed).select(S.SEGMENT_ID, "pc1", "pc2").toPandas()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [2, 1]})
    for sid, group in points.groupby(S.SEGMENT_ID):
        ax1.scatter(group.pc1, group.pc2, s=6, alpha=0.5, label=f"{sid}: {labels.get(int(sid), '?')}")
    ax1.set_xlabel("PC1")
    ax1.set_ylabel("PC2")
    ax1.set_title(f"User segments as of {as_of} ({len(points):,} of {n:,} users)")
    ax1.legend(markerscale=3, fontsize=8)
    if fit.silhouette_by_k:
        ks = sorted(fit.silhouette_by_k)
        ax2.plot(ks, [fit.silhouette_by_k[k] for k in ks], marker="o")
        ax2.axvline(fit.k, color="grey", linestyle="--")
        ax2.set_xlabel("k")
        ax2.set_ylabel("silhouette")
        ax2.set_title(f"Silhouette by k (chosen k={fit.k})")
    else:
        ax2.text(0.5, 0.5, f"model reused from run {fit.run_id}", ha="center")
        ax2.set_axis_off()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return store.write_report(segment_plot_name(as_of), png.getvalue())


def segment_plot_name(as_of: dt.date) -> str:
    """The segments plot's name under the warehouse's reports."""
    return f"segments_{as_of.isoformat()}.png"
