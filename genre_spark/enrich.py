"""Item enrichment: title embeddings (transformer, on executors), categories (KMeans on the
embeddings, labelled by TF-IDF terms) and price bands (price quantiles)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from pyspark.ml.clustering import KMeans
from pyspark.ml.feature import RegexTokenizer, StopWordsRemover
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import EnrichSettings
from genre_spark.errors import GenreSparkError
from genre_spark.scoring.models import ModelSpec, resolve_model_path
from genre_spark.scoring.udfs import embedding_udf
from genre_spark.storage import TableStore, WriteResult


@dataclass(frozen=True)
class EnrichReport:
    items: int
    embedded: int
    categories: list[tuple[int, str, int]]  # (category_id, label, items): bounded by n_categories
    writes: list[WriteResult]

    def format(self) -> str:
        lines = [
            f"enrich: {self.embedded:,} of {self.items:,} items embedded, {len(self.categories)} categories"
        ]
        lines += [f"  category {cid:>3} {n:>6,} items  {label}" for cid, label, n in self.categories]
        return "\n".join(lines)


def encoder_spec(settings: EnrichSettings) -> ModelSpec:
    enc = settings.encoder
    path = resolve_model_path(enc.model, owner="enrich.encoder.model")
    return ModelSpec(path, enc.batch_size, enc.max_length, enc.device, enc.dtype)


def embed_items(items: DataFrame, spec: ModelSpec, model_name: str) -> DataFrame:
    """``item_embeddings`` rows for products with a title."""
    products = items.filter(F.col(S.IS_PRODUCT) & F.col(S.TITLE).isNotNull())
    return products.select(
        S.ITEM_ID,
        embedding_udf(spec)(F.col(S.TITLE)).alias(S.EMBEDDING),
        F.lit(model_name).alias("model"),
    )


def fit_categories(embeddings: DataFrame, k: int, seed: int, partitions: int) -> DataFrame:
    """(item_id, category_id) by KMeans (cosine distance).

    A row layout that depends on the item ids only (hash partitions, sorted) makes KMeans|| see the
    same partitions on every rerun, so the assignment is stable whatever the input file layout."""
    data = (
        embeddings.select(S.ITEM_ID, array_to_vector(F.col(S.EMBEDDING)).alias("features"))
        .repartition(partitions, S.ITEM_ID)
        .sortWithinPartitions(S.ITEM_ID)
    )
    model = KMeans(k=k, seed=seed, distanceMeasure="cosine", featuresCol="features", maxIter=50).fit(data)
    return model.transform(data).select(S.ITEM_ID, F.col("prediction").cast("int").alias(S.CATEGORY_ID))


def category_labels(titled: DataFrame, n_terms: int, min_length: int) -> DataFrame:
    """(category_id, category_label): the terms most frequent in the category and rare in the others
    (TF-IDF with each category as one document)."""
    tokens = RegexTokenizer(
        inputCol=S.TITLE, outputCol="_tokens", pattern="[^a-z]+", minTokenLength=min_length
    ).transform(titled)
    tokens = StopWordsRemover(inputCol="_tokens", outputCol="_terms").transform(tokens)
    terms = tokens.select(S.CATEGORY_ID, F.explode("_terms").alias("term"))
    tf = terms.groupBy(S.CATEGORY_ID, "term").count()
    n_docs = terms.select(F.countDistinct(S.CATEGORY_ID).alias("n_docs"))
    df = tf.groupBy("term").agg(F.count("*").alias("df"))
    scored = (
        tf.join(df, "term")
        .crossJoin(n_docs)
        .withColumn("score", F.col("count") * F.log((F.col("n_docs") + 1) / (F.col("df") + 1)))
    )
    top = scored.withColumn(
        "_rank",
        F.row_number().over(Window.partitionBy(S.CATEGORY_ID).orderBy(F.desc("score"), F.asc("term"))),
    ).filter(F.col("_rank") <= n_terms)
    return top.groupBy(S.CATEGORY_ID).agg(
        F.concat_ws(
            " / ", F.transform(F.array_sort(F.collect_list(F.struct("_rank", "term"))), lambda s: s["term"])
        ).alias(S.CATEGORY_LABEL)
    )


def price_bands(items: DataFrame) -> DataFrame:
    """(item_id, price_band): five equal-count bands of product prices (quantiles computed in Spark)."""
    n = len(S.PRICE_BANDS)
    cuts = [i / n for i in range(1, n)]
    priced = items.filter(F.col(S.IS_PRODUCT) & (F.col(S.UNIT_PRICE) > 0))
    quantiles = priced.agg(F.percentile_approx(S.UNIT_PRICE, cuts, 10_000).alias("_q"))
    band = F.lit(S.PRICE_BANDS[-1])
    for i in reversed(range(n - 1)):
        band = F.when(F.col(S.UNIT_PRICE) <= F.col("_q")[i], F.lit(S.PRICE_BANDS[i])).otherwise(band)
    return priced.crossJoin(F.broadcast(quantiles)).select(S.ITEM_ID, band.alias(S.PRICE_BAND))


def run_enrich(store: TableStore, settings: EnrichSettings, run_id: str) -> EnrichReport:
    spec = encoder_spec(settings)  # fails on the driver, before any Spark job, if the model is missing
    items = store.read_table(S.ITEMS)
    write = functools.partial(store.write_table, mode="overwrite", run_id=run_id, stage="enrich")
    writes = [write(embed_items(items, spec, settings.encoder.model), S.ITEM_EMBEDDINGS)]
    embeddings = store.read_table(S.ITEM_EMBEDDINGS)  # computed once, read back from the table
    n_embedded = embeddings.count()
    k = min(settings.n_categories, n_embedded)
    if k < 2:
        raise GenreSparkError(f"enrich: {n_embedded} products with a title, too few to form categories")
    partitions = math.ceil(n_embedded / settings.kmeans_rows_per_partition)
    categories = fit_categories(embeddings, k, settings.seed, partitions)
    titled = (
        items.drop(S.CATEGORY_ID)
        .join(categories, S.ITEM_ID)
        .select(S.CATEGORY_ID, F.lower(S.TITLE).alias(S.TITLE))
    )
    labels = category_labels(titled, settings.label_terms, settings.min_term_length)
    enriched = (
        items.drop(S.PRICE_BAND, S.CATEGORY_ID, S.CATEGORY_LABEL)
        .join(price_bands(items), S.ITEM_ID, "left")
        .join(categories, S.ITEM_ID, "left")
        .join(F.broadcast(labels), S.CATEGORY_ID, "left")
    )
    writes.append(write(enriched, S.ITEMS))
    summary = (
        store.read_table(S.ITEMS)
        .filter(F.col(S.CATEGORY_ID).isNotNull())
        .groupBy(S.CATEGORY_ID, S.CATEGORY_LABEL)
        .count()
        .orderBy(S.CATEGORY_ID)
        .collect()  # one row per category
    )
    return EnrichReport(
        items=items.count(),
        embedded=n_embedded,
        categories=[(r[S.CATEGORY_ID], r[S.CATEGORY_LABEL], r["count"]) for r in summary],
        writes=writes,
    )
