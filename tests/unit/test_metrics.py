"""Metric parity with a numpy reference on hand-made lists, the evaluation protocol, the *new* variant."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from genre_spark import metrics as M
from genre_spark import schemas as S
from genre_spark.history import bought_pairs, purchases_between

AS_OF = dt.date(2011, 9, 1)
KS = (3, 5, 10)
LISTS = "user_id string, items array<string>"


# --------------------------------------------------------------------------- the reference


def reference(pred: list[str], rel: set[str], k: int) -> dict[str, float]:
    """Per-user metrics at k. ``pred`` is best first, deduplicated; ``rel`` is non-empty.

    The definitions verified (Spark's mllib RankingMetrics, binary relevance):
    precision = hits@k / k; recall = hits@k / |rel|; ndcg = DCG@k / IDCG@k with gain 1/log(i + 1) at
    1-based position i and IDCG over the first min(|rel|, k) positions; MAP@k = sum over hits at i of
    (hits up to i / i), divided by min(|rel|, k) (neither |rel| nor k).
    """
    top = pred[:k]
    hits = np.array([item in rel for item in top], dtype=float)
    pos = np.arange(1, len(top) + 1, dtype=float)
    ideal = np.arange(1, min(len(rel), k) + 1, dtype=float)
    return {
        "precision": hits.sum() / k,
        "recall": hits.sum() / len(rel),
        "ndcg": float((hits / np.log(pos + 1)).sum() / (1 / np.log(ideal + 1)).sum()),
        "map": float((np.cumsum(hits) / pos * hits).sum() / min(len(rel), k)),
        "hit_rate": float(hits.sum() > 0),
    }


def reference_rows(
    preds: dict[str, list[str]],
    truth: dict[str, set[str]],
    segments: dict[str, int],
    catalog: set[str],
    buyers: dict[str, int],
    variant: str,
    ks: tuple[int, ...] = KS,
) -> list[tuple[object, ...]]:
    """The expected ``metrics`` rows: the protocol of genre_spark.metrics written out in plain Python."""
    total = sum(buyers.values()) + len(catalog)
    out: list[tuple[object, ...]] = []
    groups: list[int | None] = [None, *sorted(set(segments.values()))]
    for group in groups:
        users = set(preds) | set(truth)
        if group is not None:
            users = {u for u in users if segments.get(u) == group}
        evaluated = sorted(u for u in users if truth.get(u))
        served = sorted(u for u in users if preds.get(u))
        counts = {
            "users_evaluated": len(evaluated),
            "users_without_list": sum(1 for u in evaluated if not preds.get(u)),
            "users_without_truth": sum(1 for u in served if not truth.get(u)),
        }
        out += [("r", AS_OF, "m", name, None, group, float(v), variant) for name, v in counts.items()]
        for k in ks:
            per_user = [reference(preds.get(u, []), truth[u], k) for u in evaluated]
            for name in ("precision", "recall", "ndcg", "map", "hit_rate") if per_user else ():
                value = float(np.mean([p[name] for p in per_user]))
                out.append(("r", AS_OF, "m", name, k, group, value, variant))
            slots = [item for u in served for item in preds[u][:k]]
            if not slots:
                continue
            coverage = len(set(slots) & catalog) / len(catalog)
            novelty = float(np.mean([-math.log2((buyers.get(i, 0) + 1) / total) for i in slots]))
            out.append(("r", AS_OF, "m", "coverage", k, group, coverage, variant))
            out.append(("r", AS_OF, "m", "novelty", k, group, novelty, variant))
    return out


# --------------------------------------------------------------------------- hand-made data

# (user, item, score): u1 has a three-way tie at 0.5 (broken by item id: c, d, e), u7 lists b twice.
SCORED = [
    ("u1", "a", 0.9), ("u1", "d", 0.5), ("u1", "c", 0.5), ("u1", "e", 0.5), ("u1", "b", 0.7),
    ("u2", "d", 3.0), ("u2", "a", 2.0), ("u2", "b", 1.0),
    ("u5", "a", 1.0), ("u5", "b", 0.5),
    *[("u6", item, 1.0 - i / 20) for i, item in enumerate("xyzabcdefghi")],
    ("u7", "b", 0.9), ("u7", "b", 0.8), ("u7", "a", 0.1),
]  # fmt: skip
PREDS = {  # the same lists, ranked by hand
    "u1": ["a", "b", "c", "d", "e"],
    "u2": ["d", "a", "b"],
    "u3": [],  # an empty list
    "u5": ["a", "b"],  # no truth: not evaluated, but served
    "u6": list("xyzabcdefghi"),  # longer than every k
    "u7": ["b", "a"],  # deduplicated
}
TRUTH = {
    "u1": {"a", "c", "x"},
    "u2": {"b"},  # fewer relevant items than k
    "u3": {"a"},
    "u4": {"c"},  # no list at all
    "u6": {"a", "i", "q", "r", "s", "t", "u"},  # more relevant items than k = 3 and 5; i at position 12
    "u7": {"b"},
}
SEGMENTS = {"u1": 0, "u2": 0, "u3": 0, "u5": 0, "u4": 1, "u6": 1}  # u7 has no segment
CATALOG = set("abcdefghixyz")
BUYERS = {"a": 40, "b": 10, "c": 5, "d": 1, "x": 2}


def lists(spark: SparkSession, data: dict[str, list[str]] | dict[str, set[str]]) -> DataFrame:
    return spark.createDataFrame(
        [(u, sorted(v) if isinstance(v, set) else v) for u, v in data.items()], LISTS
    )


def predictions(spark: SparkSession) -> DataFrame:
    rows = spark.createDataFrame(SCORED, "user_id string, item_id string, score double")
    empty = spark.createDataFrame([("u3", [])], LISTS)
    return M.ranked_lists(rows, order_by="score", descending=True).unionByName(empty)


def inputs(spark: SparkSession) -> dict[str, DataFrame]:
    return {
        "catalog": spark.createDataFrame([(i,) for i in sorted(CATALOG)], "item_id string"),
        "popularity": spark.createDataFrame(list(BUYERS.items()), "item_id string, buyers long"),
        "segments": spark.createDataFrame(list(SEGMENTS.items()), "user_id string, segment_id int"),
    }


def metric_rows(df: DataFrame) -> DataFrame:
    return df.orderBy("variant", "segment_id", "metric", "k")


# --------------------------------------------------------------------------- tests


def test_reference_states_spark_map_denominator() -> None:
    # min(|rel|, k): 1 relevant item found at position 2 -> 0.5 (|rel| and min agree, k would give 0.1)
    assert reference(["x", "a"], {"a"}, 5)["map"] == pytest.approx(0.5)
    # 5 relevant, hits at 1 and 3, k = 3 -> (1 + 2/3) / 3 (|rel| would give 1/3)
    assert reference(["a", "x", "b"], set("abcde"), 3)["map"] == pytest.approx(5 / 9)


def test_spark_map_at_k_uses_min_of_relevant_and_k(spark: SparkSession) -> None:
    preds = lists(spark, {"u1": ["x", "a"], "u2": ["a", "x", "b"]})
    truth = lists(spark, {"u1": {"a"}, "u2": set("abcde")})
    frame = M.evaluation_frame(preds, truth)
    got = {(v.metric, v.k): v.value for v in M.ranking_values(frame, [3, 5])}
    # u1: 0.5 at both k; u2: (1 + 2/3) / min(5, 3) at k = 3, (1 + 2/3) / min(5, 5) at k = 5
    assert got[("map", 3)] == pytest.approx((0.5 + 5 / 9) / 2)
    assert got[("map", 5)] == pytest.approx((0.5 + 5 / 3 / 5) / 2)


def test_ranked_lists_break_ties_by_item_id(spark: SparkSession) -> None:
    got = predictions(spark).where("user_id in ('u1', 'u7')")
    expected = spark.createDataFrame([("u1", PREDS["u1"]), ("u7", ["b", "b", "a"])], LISTS)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_parity_with_reference_overall_and_per_segment(spark: SparkSession) -> None:
    got = M.evaluate_lists(
        predictions(spark),
        lists(spark, TRUTH),
        ks=KS,
        **inputs(spark),
        run_id="r",
        as_of=AS_OF,
        model="m",
        variant="all",
    )
    expected = spark.createDataFrame(
        reference_rows(PREDS, TRUTH, SEGMENTS, CATALOG, BUYERS, "all"), S.CONTRACTS[S.METRICS]
    )
    assert got.schema == S.CONTRACTS[S.METRICS]
    assert_approx_df_equality(metric_rows(got), metric_rows(expected), precision=1e-9)


def test_protocol_counts(spark: SparkSession) -> None:
    frame = M.evaluation_frame(predictions(spark), lists(spark, TRUTH))
    counts = {v.metric: v.value for v in M.user_counts_and_hit_rate(frame, [3]) if v.k is None}
    # evaluated: u1 u2 u3 u4 u6 u7; without a list: u3 (empty) and u4 (none); without truth: u5
    assert counts == {"users_evaluated": 6, "users_without_list": 2, "users_without_truth": 1}


def test_exclude_bought_before(spark: SparkSession) -> None:
    history = spark.createDataFrame(
        [("u1", "b"), ("u1", "z"), ("u2", "d"), ("u2", "a"), ("u2", "b")], "user_id string, item_id string"
    )
    got = M.exclude_bought_before(lists(spark, {"u1": list("abc"), "u2": list("dab"), "u3": ["a"]}), history)
    expected = lists(spark, {"u1": ["a", "c"], "u2": [], "u3": ["a"]})
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_new_variant_matches_reference_on_filtered_lists(spark: SparkSession) -> None:
    bought = {"u1": {"a"}, "u2": {"b"}, "u6": {"x", "y", "z"}}
    history = spark.createDataFrame(
        [(u, i) for u, items in bought.items() for i in sorted(items)], "user_id string, item_id string"
    )
    common = {**inputs(spark), "segments": None, "ks": (5,), "run_id": "r", "as_of": AS_OF, "model": "m"}
    preds, truth = predictions(spark), lists(spark, TRUTH)
    new_only = [M.exclude_bought_before(df, history) for df in (preds, truth)]
    got = M.evaluate_lists(preds, truth, variant=M.VARIANT_ALL, **common).unionByName(
        M.evaluate_lists(*new_only, variant=M.VARIANT_NEW, **common)
    )
    new_preds = {u: [i for i in p if i not in bought.get(u, set())] for u, p in PREDS.items()}
    new_truth = {u: t - bought.get(u, set()) for u, t in TRUTH.items()}
    expected = spark.createDataFrame(
        reference_rows(PREDS, TRUTH, {}, CATALOG, BUYERS, "all", (5,))
        + reference_rows(new_preds, new_truth, {}, CATALOG, BUYERS, "new", (5,)),
        S.CONTRACTS[S.METRICS],
    )
    assert_approx_df_equality(metric_rows(got), metric_rows(expected), precision=1e-9)


def test_purchases_between_window_and_products(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("u1", "a", "purchase", dt.datetime(2011, 8, 31, 23, 59)),  # before the window
            ("u1", "b", "purchase", dt.datetime(2011, 9, 1, 0, 0)),  # first instant of the window
            ("u1", "b", "purchase", dt.datetime(2011, 9, 2, 0, 0)),  # same pair again
            ("u1", "c", "return", dt.datetime(2011, 9, 2, 0, 0)),
            ("u2", "post", "purchase", dt.datetime(2011, 9, 3, 0, 0)),  # not a product
            ("u2", "d", "purchase", dt.datetime(2011, 9, 8, 0, 0)),  # end is exclusive
        ],
        "user_id string, item_id string, event_type string, event_ts timestamp",
    ).selectExpr("*", "'o' AS order_id", "1 AS quantity", "1.0 AS unit_price")
    items = spark.createDataFrame(
        [(i, i != "post") for i in ("a", "b", "c", "d", "post")], "item_id string, is_product boolean"
    )
    window = bought_pairs(purchases_between(events, items, AS_OF, dt.date(2011, 9, 8)))
    assert sorted(map(tuple, window.collect())) == [("u1", "b")]
    before = bought_pairs(purchases_between(events, items, None, AS_OF))
    assert sorted(map(tuple, before.collect())) == [("u1", "a")]
    assert M.item_popularity(window).collect()[0].asDict() == {"item_id": "b", "buyers": 1}


def test_bad_cutoffs_rejected(spark: SparkSession) -> None:
    frame = M.evaluation_frame(lists(spark, {"u1": ["a"]}), lists(spark, {"u1": {"a"}}))
    with pytest.raises(ValueError, match="positive"):
        M.ranking_values(frame, [0])


def test_list_metrics_match_the_evaluator_for_many_models_at_once(spark: SparkSession) -> None:
    """The one-pass array metrics give RankingEvaluator's numbers, users without a list scoring 0."""
    second = {u: list(reversed(p)) for u, p in PREDS.items()}
    rows = [
        (model, "all", u, items)
        for model, data in (("m1", PREDS), ("m2", second))
        for u, items in data.items()
        if u != "u4"
    ]
    many = spark.createDataFrame(rows, "model string, variant string, user_id string, items array<string>")
    truth = lists(spark, TRUTH).selectExpr("'all' as variant", "user_id", "items")
    got = {(r.model, r.metric, r.k): r.value for r in M.list_metrics(many, truth, KS).collect()}
    for model, data in (("m1", PREDS), ("m2", second)):
        for k in KS:
            for metric in ("ndcg", "recall", "precision", "hit_rate"):
                expected = np.mean(
                    [
                        reference(list(dict.fromkeys(data.get(u, []))), rel, k)[metric]
                        for u, rel in TRUTH.items()
                    ]
                )
                assert got[(model, metric, k)] == pytest.approx(expected), (model, metric, k)
        assert got[(model, "users_evaluated", None)] == len(TRUTH)


def test_top_k_lists_best_first_ties_by_item(spark: SparkSession) -> None:
    scored = spark.createDataFrame(
        [("m", "all", "u1", "b", 1.0), ("m", "all", "u1", "a", 1.0), ("m", "all", "u1", "c", 2.0)],
        "model string, variant string, user_id string, item_id string, score double",
    )
    assert [r.items for r in M.top_k_lists(scored, 2).collect()] == [["c", "a"]]
