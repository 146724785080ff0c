"""The learned re-ranker: the adversarial reading of GENRE. The candidate sources are the generator;
a classifier learns to tell the candidates a user went on to buy from those merely proposed.

Training pairs are the candidates generated as of ``as_of - h`` (all sources, so the negatives are hard:
items a source found plausible), labelled 1 when the user bought the item in ``[as_of - h, as_of)``.
Labels therefore come only from before ``as_of``. Features (Spark built-ins, one row per user x item):
each source's normalised score and rank, the scorers' scores, the user's features, the item's recent
popularity, price and price band, the user's history with the item, the segment. The model is an MLlib
``PipelineModel`` (VectorAssembler + GBT or logistic regression), saved beside the tables; its
probability is what a strategy with ``ranker: discriminator`` ranks by.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import normalised_score, product_purchases
from genre_spark.config import CANDIDATE_SOURCES, SCORER_NAMES, DiscriminatorSettings
from genre_spark.storage import TableStore, WriteResult

LABEL = "label"
PROBABILITY = "probability_bought"
USER_NUMBERS = ("recency_days", "frequency", "monetary", "n_distinct_items", "tenure_days", "return_rate")
MISSING_RANK = 1000.0  # rank feature of a source that did not propose the item


def feature_columns() -> list[str]:
    sources = [f"{src}_{part}" for src in CANDIDATE_SOURCES for part in ("score", "rank")]
    return [
        *sources,
        "n_sources",
        *[f"{name}_score" for name in SCORER_NAMES],
        *USER_NUMBERS,
        "item_buyers_90d",
        "item_price",
        "price_band_index",
        "user_item_orders",
        "days_since_user_bought_item",
        "segment",
    ]


def candidate_features(
    candidates: DataFrame,
    scores: DataFrame | None,
    user_features: DataFrame,
    segments: DataFrame,
    events: DataFrame,
    items: DataFrame,
    as_of: dt.date,
) -> DataFrame:
    """(user_id, item_id, *feature_columns()) for one as-of date, from data before ``as_of`` only."""
    per_source = (
        candidates.withColumn("_norm", normalised_score())
        .groupBy(S.USER_ID, S.ITEM_ID)
        .pivot("source", list(CANDIDATE_SOURCES))
        .agg(F.max("_norm").alias("score"), F.min("source_rank").cast("double").alias("rank"))
    )
    per_source = per_source.select(
        S.USER_ID,
        S.ITEM_ID,
        *[F.coalesce(F.col(f"{s}_score"), F.lit(0.0)).alias(f"{s}_score") for s in CANDIDATE_SOURCES],
        *[F.coalesce(F.col(f"{s}_rank"), F.lit(MISSING_RANK)).alias(f"{s}_rank") for s in CANDIDATE_SOURCES],
        sum((F.col(f"{s}_score").isNotNull().cast("int") for s in CANDIDATE_SOURCES), F.lit(0))
        .cast("double")
        .alias("n_sources"),
    )
    if scores is not None:
        by_scorer = (
            scores.groupBy(S.USER_ID, S.ITEM_ID).pivot("scorer", list(SCORER_NAMES)).agg(F.max("score"))
        )
        per_source = per_source.join(by_scorer, [S.USER_ID, S.ITEM_ID], "left")
    else:
        per_source = per_source.select("*", *[F.lit(None).cast("double").alias(n) for n in SCORER_NAMES])
    bought = product_purchases(events, items, as_of)
    days = F.datediff(F.lit(as_of), F.to_date(S.EVENT_TS))
    recent_buyers = (
        bought.filter(days <= 90).groupBy(S.ITEM_ID).agg(F.countDistinct(S.USER_ID).alias("_buyers"))
    )
    history = bought.groupBy(S.USER_ID, S.ITEM_ID).agg(
        F.countDistinct(S.ORDER_ID).alias("_orders"), F.min(days).alias("_days_since")
    )
    band_index = F.array_position(F.array(*[F.lit(b) for b in S.PRICE_BANDS]), F.col(S.PRICE_BAND))
    catalog = items.select(S.ITEM_ID, F.col(S.UNIT_PRICE).alias("_price"), band_index.alias("_band"))
    users = user_features.select(S.USER_ID, *USER_NUMBERS).join(
        segments.select(S.USER_ID, S.SEGMENT_ID), S.USER_ID
    )
    joined = (
        per_source.join(users, S.USER_ID)
        .join(F.broadcast(catalog), S.ITEM_ID, "left")
        .join(F.broadcast(recent_buyers), S.ITEM_ID, "left")
        .join(history, [S.USER_ID, S.ITEM_ID], "left")
    )
    return joined.select(
        S.USER_ID,
        S.ITEM_ID,
        *[f"{s}_{part}" for s in CANDIDATE_SOURCES for part in ("score", "rank")],
        "n_sources",
        *[F.coalesce(F.col(n), F.lit(0.0)).alias(f"{n}_score") for n in SCORER_NAMES],
        *[F.col(c).cast("double").alias(c) for c in USER_NUMBERS],
        F.log1p(F.coalesce(F.col("_buyers"), F.lit(0))).alias("item_buyers_90d"),
        F.coalesce(F.col("_price"), F.lit(0.0)).alias("item_price"),
        F.coalesce(F.col("_band"), F.lit(0)).cast("double").alias("price_band_index"),
        F.coalesce(F.col("_orders"), F.lit(0)).cast("double").alias("user_item_orders"),
        F.coalesce(F.col("_days_since"), F.lit(10_000)).cast("double").alias("days_since_user_bought_item"),
        F.col(S.SEGMENT_ID).cast("double").alias("segment"),
    )


def label_pairs(
    features: DataFrame, events: DataFrame, items: DataFrame, start: dt.date, end: dt.date
) -> DataFrame:
    """``features`` with ``label`` = 1.0 where the user bought the item in ``[start, end)``."""
    window = product_purchases(events, items, end).filter(
        F.col(S.EVENT_TS) >= F.lit(start.isoformat()).cast("timestamp")
    )
    positives = window.select(S.USER_ID, S.ITEM_ID).distinct().withColumn("_bought", F.lit(1.0))
    return (
        features.join(positives, [S.USER_ID, S.ITEM_ID], "left")
        .select("*", F.coalesce(F.col("_bought"), F.lit(0.0)).alias(LABEL))
        .drop("_bought")
    )


def classifier_pipeline(settings: DiscriminatorSettings) -> Pipeline:
    assembler = VectorAssembler(inputCols=feature_columns(), outputCol="_features", handleInvalid="keep")
    if settings.model == "gbt":
        gbt = GBTClassifier(
            featuresCol="_features",
            labelCol=LABEL,
            maxIter=settings.max_iter,
            maxDepth=settings.max_depth,
            seed=settings.seed,
        )
        return Pipeline(stages=[assembler, gbt])
    scaler = StandardScaler(inputCol="_features", outputCol="_scaled", withMean=True)
    lr = LogisticRegression(featuresCol="_scaled", labelCol=LABEL, maxIter=settings.max_iter, regParam=0.01)
    return Pipeline(stages=[assembler, scaler, lr])


@dataclass(frozen=True)
class TrainingReport:
    train_as_of: dt.date
    pairs: int
    positives: int
    auc_train: float

    def format(self) -> str:
        share = self.positives / max(self.pairs, 1)
        return (
            f"discriminator trained on candidates as of {self.train_as_of}: {self.pairs:,} pairs, "
            f"{self.positives:,} bought ({share:.2%}); training AUC {self.auc_train:.3f}"
        )


def fit_discriminator(
    labelled: DataFrame, settings: DiscriminatorSettings
) -> tuple[PipelineModel, TrainingReport]:
    """Fit on all positives and a seeded sample of the negatives (``negative_fraction``)."""
    sample = labelled.sampleBy(LABEL, {0.0: settings.negative_fraction, 1.0: 1.0}, seed=settings.seed)
    sample = sample.persist()
    try:
        counts = {r[LABEL]: r["count"] for r in sample.groupBy(LABEL).count().collect()}  # two rows
        model = classifier_pipeline(settings).fit(sample)
        auc = BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol="rawPrediction").evaluate(
            model.transform(sample)
        )
    finally:
        sample.unpersist()
    pairs = int(sum(counts.values()))
    return model, TrainingReport(dt.date.min, pairs, int(counts.get(1.0, 0)), float(auc))


def predict(model: PipelineModel, features: DataFrame) -> DataFrame:
    """(user_id, item_id, probability_bought)."""
    return model.transform(features).select(
        S.USER_ID, S.ITEM_ID, vector_to_array(F.col("probability"))[1].alias(PROBABILITY)
    )


@dataclass(frozen=True)
class DiscriminatorReport:
    training: TrainingReport
    scored: int
    write: WriteResult

    def format(self) -> str:
        return f"{self.training.format()}\n  {self.scored:,} candidates scored (ranker_scores)"


def features_as_of(store: TableStore, as_of: dt.date) -> DataFrame:
    """Candidate features for one date, from the tables the earlier stages wrote for it."""
    on_date = F.col(S.AS_OF) == F.lit(as_of)
    return candidate_features(
        store.read_table(S.CANDIDATES).filter(on_date),
        store.read_table(S.SCORES).filter(on_date) if store.exists(S.SCORES) else None,
        store.read_table(S.USER_FEATURES).filter(on_date),
        store.read_table(S.USER_SEGMENTS).filter(on_date),
        store.read_table(S.EVENTS),
        store.read_table(S.ITEMS),
        as_of,
    )


def train_and_score(
    store: TableStore, settings: DiscriminatorSettings, as_of: dt.date, run_id: str
) -> DiscriminatorReport:
    """Fit on the candidates as of ``as_of - horizon`` (labels from before ``as_of``), save the model,
    and write the probabilities of the candidates as of ``as_of`` to ``ranker_scores``."""
    train_as_of = as_of - dt.timedelta(days=settings.horizon_days)
    events, items = store.read_table(S.EVENTS), store.read_table(S.ITEMS)
    labelled = label_pairs(features_as_of(store, train_as_of), events, items, train_as_of, as_of)
    model, report = fit_discriminator(labelled, settings)
    path = store.model_path("discriminator", run_id)
    model.write().overwrite().save(path)
    store.set_latest_model("discriminator", run_id)
    probabilities = predict(PipelineModel.load(path), features_as_of(store, as_of)).select(
        "*", F.lit(run_id).alias("model_run_id"), F.lit(as_of).cast("date").alias(S.AS_OF)
    )
    write = store.replace_date(
        probabilities, S.RANKER_SCORES, as_of=as_of, run_id=run_id, stage="discriminator"
    )
    scored = store.read_table(S.RANKER_SCORES).filter(F.col(S.AS_OF) == F.lit(as_of)).count()
    return DiscriminatorReport(dataclasses.replace(report, train_as_of=train_as_of), scored, write)
