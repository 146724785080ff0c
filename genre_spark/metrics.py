"""Offline ranking metrics of top-K lists against held-out purchases (issue 6), as ``metrics`` rows.

Inputs are keyed by ``user_id``:

- predictions: ``(user_id, items array<string>)``, best first (:func:`ranked_lists` builds them from one
  row per recommended item, ties broken by item id);
- truth: ``(user_id, items array<string>)``, the relevant items (:func:`purchase_lists` over
  :func:`genre_spark.history.purchases_between` builds them from the purchases of the evaluation window).

Protocol (who is in each denominator):

- Ranking metrics (ndcg, recall, precision, map, hit_rate) average over the *evaluated users*: users with at
  least one relevant item (after the variant's filtering). An evaluated user without a list, or with an empty
  one, is a miss (0). Users with a list but no relevant item are left out (Spark's evaluator would score them
  0 and only log a warning); they are counted as ``users_without_truth``.
- Catalog coverage and novelty describe what was served: every user with a non-empty list, truth or not.
- Per segment (``segments``: user_id, segment_id), the same over the segment's users; users without a segment
  only count in the overall rows (segment_id null).
- Lists are deduplicated (first occurrence kept) and null items dropped before anything is measured.

Definitions at cut-off k, binary relevance, positions i = 1..k. The first four are computed by MLlib's
``RankingEvaluator`` (``RankingMetrics`` in Spark's source) and match its definitions:

- precision@k = hits in the top k / k (k even when the list is shorter than k);
- recall@k = hits in the top k / |relevant| (so it stays below 1 when |relevant| > k);
- ndcg@k = sum over hits at i of 1/log(i + 1), divided by the same sum over i = 1..min(|relevant|, k);
- map@k = sum over hits at i of (hits in the top i / i), divided by **min(|relevant|, k)**;
- hit_rate@k = share of evaluated users with at least one hit in the top k;
- coverage@k = distinct catalog items in any top k / catalog size;
- novelty@k = mean over served (user, position <= k) of -log2 p(item), with the item's popularity share
  p(item) = (buyers + 1) / (sum of buyers over items + catalog size) (add-one, so unseen items stay finite).

The *new* variant (:func:`exclude_bought_before`) removes the items a user bought before ``as_of`` from the
user's list (later items move up) and from the truth (users left without truth drop out of the denominator).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pyspark import StorageLevel
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S

ITEMS_COL = "items"  # the array column of predictions and truth
PREDICTED = "predicted"
RELEVANT = "relevant"

VARIANT_ALL = "all"
VARIANT_NEW = "new"

# metric name in `metrics` -> RankingEvaluator metricName
EvaluatorMetric = Literal["ndcgAtK", "recallAtK", "precisionAtK", "meanAveragePrecisionAtK"]
EVALUATOR_METRICS: dict[str, EvaluatorMetric] = {
    "ndcg": "ndcgAtK",
    "recall": "recallAtK",
    "precision": "precisionAtK",
    "map": "meanAveragePrecisionAtK",
}
HIT_RATE = "hit_rate"
COVERAGE = "coverage"
NOVELTY = "novelty"
# user counts (k null): the denominator of the ranking metrics and who was left out of it
USERS_EVALUATED = "users_evaluated"
USERS_WITHOUT_LIST = "users_without_list"  # evaluated users with no or an empty list (scored 0)
USERS_WITHOUT_TRUTH = "users_without_truth"  # served users with no relevant item (not evaluated)

_PRED_IDX = "_pred_idx"
_REL_IDX = "_rel_idx"
_TOTAL = "_total"


@dataclass(frozen=True)
class MetricValue:
    metric: str
    k: int | None
    segment_id: int | None
    value: float


# --------------------------------------------------------------------------- building the inputs


def ranked_lists(rows: DataFrame, *, order_by: str = "rank", descending: bool = False) -> DataFrame:
    """``(user_id, items)`` from one row per (user, item), ordered by ``order_by`` (ties: item id ascending).

    Use ``order_by="rank"`` for ``recommendations`` and ``order_by="score", descending=True`` for scored rows.
    """
    key = F.col(order_by).cast("double")
    key = -key if descending else key
    entries = F.sort_array(F.collect_list(F.struct(key.alias("key"), F.col(S.ITEM_ID).alias("item"))))
    return (
        rows.where(F.col(S.ITEM_ID).isNotNull())
        .groupBy(S.USER_ID)
        .agg(F.transform(entries, lambda e: e["item"]).alias(ITEMS_COL))
    )


def purchase_lists(pairs: DataFrame) -> DataFrame:
    """``(user_id, items)`` from ``(user_id, item_id)`` rows: the truth sets (sorted, for stable output)."""
    return pairs.groupBy(S.USER_ID).agg(F.sort_array(F.collect_set(S.ITEM_ID)).alias(ITEMS_COL))


def item_popularity(pairs: DataFrame) -> DataFrame:
    """``(item_id, buyers)``: distinct users per item, from the training period's ``(user_id, item_id)``."""
    return pairs.groupBy(S.ITEM_ID).agg(F.countDistinct(S.USER_ID).alias("buyers"))


def exclude_bought_before(lists: DataFrame, history: DataFrame) -> DataFrame:
    """The *new* variant of ``(user_id, items)``: drop the items in the user's ``history`` (user_id, item_id).

    Order is kept and later items move up; users whose list becomes empty keep an empty list.
    """
    bought = history.groupBy(S.USER_ID).agg(F.collect_set(S.ITEM_ID).alias("_bought"))
    seen = F.coalesce(F.col("_bought"), F.array().cast("array<string>"))
    return (
        lists.join(bought, S.USER_ID, "left")
        .withColumn(ITEMS_COL, F.filter(ITEMS_COL, lambda x: ~F.array_contains(seen, x)))
        .drop("_bought")
    )


# --------------------------------------------------------------------------- evaluation


def _clean(column: str) -> Column:
    """Null list -> empty; null items dropped; duplicates dropped (first occurrence kept)."""
    values = F.coalesce(F.col(column), F.array().cast("array<string>"))
    return F.array_distinct(F.filter(values, lambda x: x.isNotNull()))


def evaluation_frame(
    predictions: DataFrame, truth: DataFrame, segments: DataFrame | None = None
) -> DataFrame:
    """One row per user with a list or a truth set: user_id, segment_id, predicted, relevant (never null)."""
    frame = (
        predictions.select(S.USER_ID, F.col(ITEMS_COL).alias(PREDICTED))
        .join(truth.select(S.USER_ID, F.col(ITEMS_COL).alias(RELEVANT)), S.USER_ID, "full_outer")
        .select(S.USER_ID, _clean(PREDICTED).alias(PREDICTED), _clean(RELEVANT).alias(RELEVANT))
    )
    if segments is None:
        return frame.withColumn(S.SEGMENT_ID, F.lit(None).cast("int"))
    seg = segments.select(S.USER_ID, F.col(S.SEGMENT_ID).cast("int").alias(S.SEGMENT_ID))
    return frame.join(seg, S.USER_ID, "left")


def _as_doubles(frame: DataFrame) -> DataFrame:
    """RankingEvaluator takes array<double>: each item becomes its 1-based position in the user's own
    union of predicted and relevant items (exact, per row: no global item index, no shuffle)."""
    universe = F.array_union(F.col(PREDICTED), F.col(RELEVANT))

    def index(column: str) -> Column:
        return F.transform(column, lambda x: F.array_position(universe, x).cast("double"))

    return frame.select(S.SEGMENT_ID, index(PREDICTED).alias(_PRED_IDX), index(RELEVANT).alias(_REL_IDX))


def _check_ks(ks: Sequence[int]) -> list[int]:
    if not ks or any(k <= 0 for k in ks):
        raise ValueError(f"cut-offs k must be positive and at least one, got {list(ks)}")
    return sorted(set(ks))


def ranking_values(frame: DataFrame, ks: Sequence[int]) -> list[MetricValue]:
    """ndcg, recall, precision, map (MLlib RankingEvaluator) at each k over the evaluated users, overall and
    per segment. One evaluator pass per metric, k and group over the cached, indexed frame."""
    cuts = _check_ks(ks)
    indexed = _as_doubles(frame.where(F.size(RELEVANT) > 0)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # bounded by the number of segments
        segment_ids = sorted(
            r[0] for r in indexed.select(S.SEGMENT_ID).distinct().collect() if r[0] is not None
        )
        if indexed.isEmpty():
            return []
        out: list[MetricValue] = []
        for segment in [None, *segment_ids]:
            part = indexed if segment is None else indexed.where(F.col(S.SEGMENT_ID) == segment)
            for k in cuts:
                for name, spark_name in EVALUATOR_METRICS.items():
                    evaluator = RankingEvaluator(
                        predictionCol=_PRED_IDX, labelCol=_REL_IDX, metricName=spark_name, k=k
                    )
                    out.append(MetricValue(name, k, segment, float(evaluator.evaluate(part))))
        return out
    finally:
        indexed.unpersist()


def _grouped(df: DataFrame, *aggs: Column) -> list[tuple[int | None, dict[str, float]]]:
    """Aggregates overall (segment None) and per segment in one pass (rollup); users without a segment
    only count overall. Returns (segment_id, values) pairs, bounded by the number of segments."""
    # one row per segment, plus the total
    rows = df.rollup(S.SEGMENT_ID).agg(*aggs, F.grouping(S.SEGMENT_ID).alias(_TOTAL)).collect()
    out: list[tuple[int | None, dict[str, float]]] = []
    for row in rows:
        values = row.asDict()
        segment, total = values.pop(S.SEGMENT_ID), values.pop(_TOTAL)
        if total == 1:
            out.append((None, values))
        elif segment is not None:
            out.append((segment, values))
    return sorted(out, key=lambda p: (p[0] is not None, p[0] or 0))


def user_counts_and_hit_rate(frame: DataFrame, ks: Sequence[int]) -> list[MetricValue]:
    """The user counts of the protocol and hit_rate@k (share of evaluated users with a hit in the top k)."""
    cuts = _check_ks(ks)
    has_truth = F.size(RELEVANT) > 0
    has_list = F.size(PREDICTED) > 0

    def hit(k: int) -> Column:
        top = F.slice(PREDICTED, 1, k)
        return F.exists(top, lambda x: F.array_contains(F.col(RELEVANT), x)).cast("double")

    aggs = [
        F.sum(has_truth.cast("long")).alias(USERS_EVALUATED),
        F.sum((has_truth & ~has_list).cast("long")).alias(USERS_WITHOUT_LIST),
        F.sum((has_list & ~has_truth).cast("long")).alias(USERS_WITHOUT_TRUTH),
        *[F.avg(F.when(has_truth, hit(k))).alias(f"{HIT_RATE}@{k}") for k in cuts],
    ]
    return _to_values(_grouped(frame, *aggs))


def coverage_and_novelty(
    frame: DataFrame, ks: Sequence[int], catalog: DataFrame, popularity: DataFrame
) -> list[MetricValue]:
    """coverage@k and novelty@k of the served lists (every user with a non-empty list).

    ``catalog``: the recommendable items (``item_id``), the coverage denominator; recommended items outside
    it count for novelty but not for coverage. ``popularity``: ``(item_id, buyers)`` of the training period.
    """
    cuts = _check_ks(ks)
    items = catalog.select(S.ITEM_ID).where(F.col(S.ITEM_ID).isNotNull()).distinct()
    n_catalog = items.count()
    total_buyers = popularity.agg(F.sum("buyers")).collect()[0][0] or 0  # one row
    served = frame.where(F.size(PREDICTED) > 0).select(
        S.SEGMENT_ID, F.posexplode(F.slice(PREDICTED, 1, max(cuts))).alias("pos", S.ITEM_ID)
    )
    share = (F.coalesce(F.col("buyers"), F.lit(0)) + 1) / F.lit(float(total_buyers + n_catalog))
    slots = (
        served.join(popularity.select(S.ITEM_ID, "buyers"), S.ITEM_ID, "left")
        .join(items.withColumn("_in_catalog", F.lit(True)), S.ITEM_ID, "left")
        .withColumn("_info", -F.log2(share))
    )
    in_catalog = F.col("_in_catalog").isNotNull()
    aggs = []
    for k in cuts:
        top = F.col("pos") < k
        aggs.append(F.count_distinct(F.when(top & in_catalog, F.col(S.ITEM_ID))).alias(f"_distinct@{k}"))
        aggs.append(F.avg(F.when(top, F.col("_info"))).alias(f"{NOVELTY}@{k}"))
    out: list[tuple[int | None, dict[str, float]]] = []
    for segment, values in _grouped(slots, *aggs):
        for k in cuts:
            values[f"{COVERAGE}@{k}"] = values.pop(f"_distinct@{k}") / n_catalog if n_catalog else 0.0
        out.append((segment, values))
    return _to_values(out)


def _to_values(grouped: list[tuple[int | None, dict[str, float]]]) -> list[MetricValue]:
    """Flattens ``name@k`` (or ``name``) keyed values; None (no user to average over) is left out."""
    out = []
    for segment, values in grouped:
        for key, value in values.items():
            name, _, k = key.partition("@")
            if value is not None:
                out.append(MetricValue(name, int(k) if k else None, segment, float(value)))
    return out


def evaluate_lists(
    predictions: DataFrame,
    truth: DataFrame,
    *,
    ks: Sequence[int],
    catalog: DataFrame,
    popularity: DataFrame,
    segments: DataFrame | None,
    run_id: str,
    as_of: dt.date,
    model: str,
    variant: str,
) -> DataFrame:
    """Every metric at every k, overall and per segment, as rows of the ``metrics`` contract.

    The caller applies the variant's filtering (:func:`exclude_bought_before`) and names it in ``variant``.
    """
    # computed once (the predictions are usually a whole ranking), read by three passes
    frame = evaluation_frame(predictions, truth, segments).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        values = [
            *user_counts_and_hit_rate(frame, ks),
            *ranking_values(frame, ks),
            *coverage_and_novelty(frame, ks, catalog, popularity),
        ]
    finally:
        frame.unpersist()
    rows = [(run_id, as_of, model, v.metric, v.k, v.segment_id, v.value, variant) for v in values]
    return frame.sparkSession.createDataFrame(rows, schema=S.CONTRACTS[S.METRICS])


# --------------------------------------------------------------------------- many lists in one pass

MODEL = "model"
VARIANT = "variant"


def top_k_lists(scored: DataFrame, k: int, keys: Sequence[str] = (MODEL, VARIANT)) -> DataFrame:
    """``(*keys, user_id, items)``: each user's ``k`` best items by ``score`` (ties: item id ascending),
    from one row per (keys, user, item). A sorted array per user, no window."""
    entry = F.struct((-F.col("score")).alias("neg"), F.col(S.ITEM_ID).alias("item"))
    best = F.slice(F.sort_array(F.collect_list(entry)), 1, k)
    return (
        scored.where(F.col(S.ITEM_ID).isNotNull() & F.col("score").isNotNull())
        .groupBy(*keys, S.USER_ID)
        .agg(F.transform(best, lambda e: e["item"]).alias(ITEMS_COL))
    )


def _gain(i: Column) -> Column:
    """The DCG discount of position i = 0, 1, ..."""
    return F.lit(1.0) / F.log2(i + 2)


def _metrics_at(k: int) -> list[Column]:
    """Mean ndcg, recall, precision and hit rate at ``k`` over the rows of (relevant, predicted) arrays."""
    top = F.slice(PREDICTED, 1, k)
    hit = F.transform(top, lambda x: F.array_contains(F.col(RELEVANT), x).cast("double"))
    hits = F.aggregate(hit, F.lit(0.0), lambda acc, h: acc + h)
    dcg = F.aggregate(F.transform(hit, lambda h, i: h * _gain(i)), F.lit(0.0), lambda acc, g: acc + g)
    ideal_n = F.least(F.size(RELEVANT), F.lit(k))
    idcg = F.aggregate(
        F.transform(F.sequence(F.lit(0), ideal_n - 1), lambda i: _gain(i)),
        F.lit(0.0),
        lambda acc, g: acc + g,
    )
    return [
        F.avg(dcg / idcg).alias(f"ndcg@{k}"),
        F.avg(hits / F.size(RELEVANT)).alias(f"recall@{k}"),
        F.avg(hits / F.lit(k)).alias(f"precision@{k}"),
        F.avg((hits > 0).cast("double")).alias(f"{HIT_RATE}@{k}"),
    ]


def list_metrics(lists: DataFrame, truth: DataFrame, ks: Sequence[int]) -> DataFrame:
    """ndcg, recall, precision and hit_rate at each k, and users_evaluated, per (variant, model).

    ``lists``: (model, variant, user_id, items); ``truth``: (variant, user_id, items), one row per evaluated
    user with a non-empty truth. Every evaluated user counts for every model of the variant: a user the
    model gave no list scores 0. Definitions as in the module docstring (MLlib's RankingMetrics), computed
    with array functions over all models at once; ``test_metrics`` checks them against RankingEvaluator.
    """
    cuts = _check_ks(ks)
    # every model in every variant: a model without a single list in a variant scores 0 there
    models = lists.select(MODEL).distinct().crossJoin(truth.select(VARIANT).distinct())
    # one struct key rather than three columns: the lists are unions of branches with a literal variant
    # and model, and Spark's runtime bloom filter on such a key folds its hash to a constant that fails
    # code generation (an ERROR with a stack trace per plan, then the slower interpreted path)
    key = F.struct(VARIANT, MODEL, S.USER_ID).alias("_key")
    frame = (
        truth.select(VARIANT, S.USER_ID, _clean(ITEMS_COL).alias(RELEVANT))
        .where(F.size(RELEVANT) > 0)
        .join(models, VARIANT)
        .select("*", key)
        .join(lists.select(key, F.col(ITEMS_COL).alias(PREDICTED)), "_key", "left")
        .drop("_key")
        .withColumn(PREDICTED, _clean(PREDICTED))
    )

    aggs = [F.count("*").cast("double").alias(f"{USERS_EVALUATED}@0")]
    for k in cuts:
        aggs += _metrics_at(k)
    wide = frame.groupBy(VARIANT, MODEL).agg(*aggs)
    stacked = F.explode(
        F.array(
            *[
                F.struct(
                    F.lit(c.split("@")[0]).alias("metric"),
                    F.lit(int(c.split("@")[1])).alias("k"),
                    F.col(f"`{c}`").alias("value"),
                )
                for c in wide.columns
                if "@" in c
            ]
        )
    )
    return wide.select(VARIANT, MODEL, stacked.alias("_m")).select(
        VARIANT, MODEL, "_m.metric", F.when(F.col("_m.k") > 0, F.col("_m.k")).alias("k"), "_m.value"
    )
