"""Each candidate source on inline data."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import candidates as C
from genre_spark import schemas as S
from genre_spark.candidates import (
    FIT_SALT,
    SourceInputs,
    als_candidates,
    als_fit_users,
    block_neighbours,
    buy_again,
    cooccurrence_neighbours,
    from_neighbours,
    generate_candidates,
    global_popularity,
    recent_anchors,
    recent_orders,
    seasonal_popularity,
    segment_popularity,
    similar_users,
)
from genre_spark.config import Settings
from genre_spark.history import History, purchase_history
from genre_spark.storage import TableStore
from tests.conftest import history_of

AS_OF = dt.date(2011, 12, 9)
PURCHASES = "user_id string, item_id string, order_id string, event_ts timestamp, quantity int"
CANDIDATE = (
    "user_id string, item_id string, source string, source_score double, source_rank int, detail string"
)


def day(n: int) -> dt.datetime:
    """Noon, n days before AS_OF."""
    return dt.datetime(2011, 12, 9, 12) - dt.timedelta(days=n)


def purchases(spark: SparkSession, rows: list[tuple[str, str, str, int]]) -> DataFrame:
    """rows: (user, item, order, days before as-of)."""
    return spark.createDataFrame([(u, i, o, day(d), 1) for u, i, o, d in rows], PURCHASES)


def test_the_history_purchases_are_products_before_as_of(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("u1", "A", "purchase", 1, 1.0, day(3), "o1"),
            ("u1", "POST", "purchase", 1, 1.0, day(3), "o1"),
            ("u1", "A", "return", 1, 1.0, day(2), "C1"),
            ("u1", "B", "purchase", 1, 1.0, dt.datetime(2011, 12, 9, 0, 0), "o2"),
        ],
        "user_id string, item_id string, event_type string, quantity int, unit_price double, "
        "event_ts timestamp, order_id string",
    )
    items = spark.createDataFrame(
        [("A", True), ("B", True), ("POST", False)], "item_id string, is_product boolean"
    )
    assert [(r.user_id, r.item_id) for r in history_of(events, items, AS_OF).purchases().collect()] == [
        ("u1", "A")
    ]


def test_buy_again_weights_orders_by_recency(spark: SparkSession) -> None:
    p = purchases(
        spark,
        [
            ("u1", "A", "o1", 30),
            ("u1", "A", "o2", 20),
            ("u1", "A", "o3", 10),
            ("u1", "B", "o3", 10),
            ("u1", "C", "o4", 0),
            ("u2", "A", "o5", 5),
        ],
    )
    result = buy_again(purchase_history(p), AS_OF, half_life=10, limit=2)
    expected = spark.createDataFrame(
        [
            ("u1", "A", "buy_again", 3 * 0.5, 1, "bought 3 times, last 10 days ago"),
            ("u1", "C", "buy_again", 1.0, 2, "bought once, 0 days ago"),  # B (0.5) is cut by the limit
            ("u2", "A", "buy_again", 0.5**0.5, 1, "bought once, 5 days ago"),
        ],
        CANDIDATE,
    )
    assert_approx_df_equality(result, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_segment_popularity_decays_and_reaches_every_member(spark: SparkSession) -> None:
    p = purchases(
        spark,
        [
            ("u1", "A", "o1", 0),
            ("u2", "A", "o2", 7),
            ("u2", "B", "o2", 7),
            ("u1", "B", "o3", 200),
            ("u4", "Z", "o4", 1),
        ],
    )
    segments = spark.createDataFrame(
        [("u1", 0, "loyal"), ("u2", 0, "loyal"), ("u3", 0, "loyal"), ("u4", 1, "new")],
        "user_id string, segment_id int, segment_label string",
    )
    result = segment_popularity(p, segments, AS_OF, window_days=90, half_life=7, limit=5)
    detail = "popular in segment 'loyal' over the last 90 days"
    rows = [(u, "A", "segment_popularity", 1.5, 1, detail) for u in ("u1", "u2", "u3")]
    rows += [(u, "B", "segment_popularity", 0.5, 2, detail) for u in ("u1", "u2", "u3")]  # u1's B is too old
    rows += [
        ("u4", "Z", "segment_popularity", 0.5 ** (1 / 7), 1, "popular in segment 'new' over the last 90 days")
    ]
    assert_approx_df_equality(
        result, spark.createDataFrame(rows, CANDIDATE), 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_global_popularity_is_one_list_for_everyone(spark: SparkSession) -> None:
    p = purchases(
        spark, [("u1", "A", "o1", 0), ("u2", "A", "o2", 7), ("u2", "B", "o2", 7), ("u4", "Z", "o4", 1)]
    )
    users = spark.createDataFrame([("u1",), ("u3",)], "user_id string")
    result = global_popularity(p, users, AS_OF, window_days=90, half_life=7, limit=2)
    detail = "popular with all customers over the last 90 days"
    rows = [(u, "A", "popularity", 1.5, 1, detail) for u in ("u1", "u3")]
    rows += [(u, "Z", "popularity", 0.5 ** (1 / 7), 2, detail) for u in ("u1", "u3")]  # B (0.5) is 3rd
    assert_approx_df_equality(
        result, spark.createDataFrame(rows, CANDIDATE), 1e-9, ignore_row_order=True, ignore_nullable=True
    )


def test_seasonal_popularity_counts_the_coming_days_a_year_back(spark: SparkSession) -> None:
    """As of 2011-12-09 with 7 days: the buyers of 2010-12-10 .. 2010-12-16 (52 weeks back), one vote each."""
    lines = [("u1", "A", "o1", 364), ("u2", "A", "o2", 358), ("u2", "B", "o2", 358)]
    lines += [("u3", "C", "o3", 357), ("u3", "D", "o4", 365), ("u4", "E", "o5", 1)]  # outside the window
    users = spark.createDataFrame([("u1",), ("u9",)], "user_id string")
    result = seasonal_popularity(purchases(spark, lines), users, AS_OF, window_days=7, limit=5)
    detail = "popular in the same weeks last year (2010-12-10 to 2010-12-16)"
    rows = [
        (u, i, "seasonal", score, rank, detail)
        for u in ("u1", "u9")
        for i, score, rank in [("A", 2.0, 1), ("B", 1.0, 2)]
    ]
    assert_df_equality(
        result, spark.createDataFrame(rows, CANDIDATE), ignore_row_order=True, ignore_nullable=True
    )


def test_cooccurrence_is_jaccard_and_skips_huge_baskets(spark: SparkSession) -> None:
    p = purchases(
        spark,
        [
            ("u", "A", "o1", 1),
            ("u", "B", "o1", 1),
            ("u", "C", "o1", 1),
            ("u", "A", "o2", 1),
            ("u", "B", "o2", 1),
            ("u", "A", "o3", 1),
            ("u", "C", "o3", 1),
        ]
        + [("w", i, "big", 1) for i in "ABCDE"],
    )
    result = cooccurrence_neighbours(p, max_basket_size=4, min_co_count=1, per_item=5)
    expected = spark.createDataFrame(
        [
            ("A", "B", 2 / 3),
            ("B", "A", 2 / 3),
            ("A", "C", 2 / 3),
            ("C", "A", 2 / 3),
            ("B", "C", 1 / 3),
            ("C", "B", 1 / 3),
        ],
        "item_id string, neighbour_id string, score double",
    )
    assert_approx_df_equality(result, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)
    assert (
        cooccurrence_neighbours(p, 4, min_co_count=2, per_item=5)
        .filter("item_id = 'B' AND neighbour_id = 'C'")
        .count()
        == 0
    )


def test_cooccurrence_counts_only_the_most_recent_orders(spark: SparkSession) -> None:
    p = purchases(
        spark,
        [
            ("u", "A", "o1", 1),
            ("u", "B", "o1", 1),
            ("u", "A", "o2", 1),
            ("u", "C", "o2", 1),
            ("u", "B", "o3", 5),  # an older day: B and C were bought together only then
            ("u", "C", "o3", 5),
        ],
    )

    def orders(max_orders: int) -> list[str]:
        return sorted({r.order_id for r in recent_orders(p, max_orders).collect()})

    assert orders(2) == ["o1", "o2"]
    assert orders(1) == ["o1", "o2"]  # whole days, at least the newest one
    assert orders(3) == ["o1", "o2", "o3"]
    result = cooccurrence_neighbours(p, max_basket_size=4, min_co_count=1, per_item=5, max_orders=2)
    expected = spark.createDataFrame(
        [("A", "B", 0.5), ("B", "A", 0.5), ("A", "C", 0.5), ("C", "A", 0.5)],
        "item_id string, neighbour_id string, score double",
    )
    assert_approx_df_equality(result, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_from_neighbours_sums_anchors_and_names_the_strongest(spark: SparkSession) -> None:
    p = purchases(spark, [("u1", "A", "o1", 3), ("u1", "B", "o2", 1), ("u1", "C", "o0", 50)])
    anchors = recent_anchors(purchase_history(p), 2)
    assert sorted(r.anchor_id for r in anchors.collect()) == ["A", "B"]  # C is the oldest
    neighbours = spark.createDataFrame(
        [("A", "X", 0.5), ("B", "X", 0.2), ("B", "Y", 0.4), ("C", "Z", 0.9)],
        "item_id string, neighbour_id string, score double",
    )
    titles = spark.createDataFrame([("A", "RED MUG"), ("B", "BLUE MUG")], "item_id string, title string")
    result = from_neighbours(anchors, neighbours, titles, "co_occurrence", "often bought with %s", 5)
    expected = spark.createDataFrame(
        [
            ("u1", "X", "co_occurrence", 0.7, 1, "often bought with RED MUG"),
            ("u1", "Y", "co_occurrence", 0.4, 2, "often bought with BLUE MUG"),
        ],
        CANDIDATE,
    )
    assert_approx_df_equality(result, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_block_neighbours_are_the_nearest_by_cosine() -> None:
    v = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=float)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    block = pd.DataFrame({"item_id": list("abcd"), "embedding": list(v)})
    out = block_neighbours(block, per_item=1).sort_values("item_id").reset_index(drop=True)
    assert list(out.neighbour_id) == ["b", "a", "d", "c"]
    np.testing.assert_allclose(out.score, [v[0] @ v[1], v[0] @ v[1], v[2] @ v[3], v[2] @ v[3]])
    assert len(block_neighbours(block.iloc[:1], per_item=3)) == 0
    # a few rows at a time (bounded memory): the same neighbours
    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 8))
    many = pd.DataFrame(
        {
            "item_id": [f"i{n:02d}" for n in range(50)],
            "embedding": list(w / np.linalg.norm(w, axis=1, keepdims=True)),
        }
    )
    at_once, chunked = block_neighbours(many, per_item=5), block_neighbours(many, per_item=5, rows_at_once=7)
    key = ["item_id", "neighbour_id"]
    pd.testing.assert_frame_equal(
        at_once.sort_values(key).reset_index(drop=True), chunked.sort_values(key).reset_index(drop=True)
    )
    assert len(chunked) == 250 and (chunked.item_id != chunked.neighbour_id).all()


def test_als_recommends_within_the_taste_group(spark: SparkSession, settings: Settings) -> None:
    rows = []
    for g, group_items in enumerate(["ABCDE", "VWXYZ"]):
        for u in range(8):
            for j, item in enumerate(group_items):
                if (u + j) % 5 != 0:  # each user misses one item of the group
                    rows.append((f"g{g}u{u}", item, f"o{g}{u}{j}", 3))
    p = purchases(spark, rows)
    als = settings.candidates.als.model_copy(update={"rank": 4, "max_iter": 15, "num_blocks": 2})
    users = spark.createDataFrame([("g0u0",), ("g1u1",)], "user_id string")
    result = als_candidates(purchase_history(p), users, als, limit=3)
    top = {r.user_id: r.item_id for r in result.filter(F.col("source_rank") == 1).collect()}
    assert top["g0u0"] in "ABCDE" and top["g1u1"] in "VWXYZ"
    assert result.count() == 6
    assert_df_equality(
        result.select("source").distinct(),
        spark.createDataFrame([("als",)], "source string"),
        ignore_nullable=True,
    )


def test_als_fit_users_keep_the_targets_then_the_smallest_hashes(spark: SparkSession) -> None:
    history = spark.createDataFrame(
        [(f"u{i}", "A") for i in range(20)] + [("u3", "B")], "user_id string, item_id string"
    )
    targets = spark.createDataFrame([("u3",), ("u7",), ("nobody",)], "user_id string")
    fit = {r.user_id for r in als_fit_users(history, targets, max_users=6, seed=42).collect()}
    by_hash = sorted(
        (r.h, r.user_id)
        for r in history.select("user_id", F.xxhash64("user_id", F.lit(42), F.lit(FIT_SALT)).alias("h"))
        .distinct()
        .collect()
    )
    others = [u for _, u in by_hash if u not in ("u3", "u7")][:4]
    assert fit == {"u3", "u7", *others}
    # another seed, other users; the users proposed for are all kept, however many they are
    again = {r.user_id for r in als_fit_users(history, targets, max_users=6, seed=7).collect()}
    assert again != fit and {"u3", "u7"} <= again and len(again) == 6
    everyone = history.select("user_id").distinct()
    assert als_fit_users(history, everyone, max_users=6, seed=42).count() == 20


def test_als_caps_the_fit_of_a_training_sample_only(
    spark: SparkSession, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps: list[int | None] = []
    monkeypatch.setattr(C, "als_candidates", lambda *args: caps.append(args[-1]))
    als = settings.candidates.als.model_copy(update={"max_fit_users": 10})
    frame = spark.createDataFrame([("u1",)], "user_id string")
    inputs = SourceInputs(
        frame, frame, frame, frame, None, settings.candidates.model_copy(update={"als": als}), AS_OF
    )
    C.SOURCES["als"](inputs, 5)
    C.SOURCES["als"](dataclasses.replace(inputs, targets=frame), 5)
    assert caps == [None, 10]


def test_als_with_a_capped_fit_still_proposes_for_every_target(
    spark: SparkSession, settings: Settings
) -> None:
    rows = [
        (f"g{g}u{u}", item, f"o{g}{u}{j}", 3)
        for g, group_items in enumerate(["ABCDE", "VWXYZ"])
        for u in range(8)
        for j, item in enumerate(group_items)
        if (u + j) % 5 != 0
    ]
    als = settings.candidates.als.model_copy(update={"rank": 4, "max_iter": 15, "num_blocks": 2})
    users = spark.createDataFrame([("g0u0",), ("g1u1",)], "user_id string")
    result = als_candidates(purchase_history(purchases(spark, rows)), users, als, limit=3, max_fit_users=6)
    assert sorted(r.user_id for r in result.select("user_id").distinct().collect()) == ["g0u0", "g1u1"]
    assert result.count() == 6


def test_similar_users_offer_the_nearest_users_items(spark: SparkSession, settings: Settings) -> None:
    rows = [
        ("u1", "A", "o1", 10), ("u1", "B", "o1", 10),
        ("u2", "A", "o2", 10), ("u2", "B", "o2", 10), ("u2", "C", "o3", 10),  # u1's twin, and C
        ("u3", "A", "o4", 10), ("u3", "D", "o4", 10),  # shares one item with u1
        ("u4", "X", "o5", 10),  # shares nothing with anyone
    ]  # fmt: skip
    similar = settings.candidates.similar_users.model_copy(update={"neighbours": 1, "half_life_days": 30.0})
    users = spark.createDataFrame([("u1",), ("u4",)], "user_id string")
    result = similar_users(purchases(spark, rows), users, AS_OF, similar, limit=10)
    # u1's one nearest user is u2 (cosine 2/sqrt(6) against u3's 1/2): u2's vector, C and the items u1 has
    third = 3**-0.5
    detail = "bought by 1 of the 1 customers with the most similar baskets"
    expected = spark.createDataFrame(
        [
            ("u1", "A", "similar_users", third, 1, detail),
            ("u1", "B", "similar_users", third, 2, detail),
            ("u1", "C", "similar_users", third, 3, detail),
        ],
        CANDIDATE,
    )
    assert_approx_df_equality(result.orderBy("source_rank"), expected, precision=1e-9, ignore_nullable=True)
    # with two neighbours, D (u3's) comes in below u2's items: the mean weighs u3 by its smaller cosine
    two = similar_users(
        purchases(spark, rows), users, AS_OF, similar.model_copy(update={"neighbours": 2}), limit=10
    )
    assert [r.item_id for r in two.orderBy("source_rank").collect()] == ["A", "B", "C", "D"]
    # asked for five, u1 has two neighbours: the detail counts the ones it has
    five = similar_users(
        purchases(spark, rows), users, AS_OF, similar.model_copy(update={"neighbours": 5}), limit=10
    )
    assert [r.detail for r in five.filter(F.col(S.ITEM_ID) == "D").collect()] == [
        "bought by 1 of the 2 customers with the most similar baskets"
    ]


def test_similar_users_compare_only_the_heaviest_buyers_of_an_item(
    spark: SparkSession, settings: Settings
) -> None:
    # u1 and u2 share only A; A's two heaviest buyers are u3 and u4 (A is all they bought)
    rows = [("u1", "A", "o1", 10), ("u1", "B", "o1", 10), ("u2", "A", "o2", 10), ("u2", "C", "o2", 10)]
    rows += [("u3", "A", "o3", 10), ("u4", "A", "o4", 10)]
    capped = settings.candidates.similar_users.model_copy(update={"neighbours": 5, "max_buyers_per_item": 2})
    users = spark.createDataFrame([("u1",), ("u3",)], "user_id string")
    result = similar_users(purchases(spark, rows), users, AS_OF, capped, limit=10)
    assert {(r.user_id, r.item_id) for r in result.collect()} == {("u3", "A")}  # u4 is u3's only peer


def test_a_neighbour_offers_only_its_heaviest_items(spark: SparkSession, settings: Settings) -> None:
    # u2 is u1's one neighbour; A weighs most in u2's vector (two orders), B and C one each
    rows = [("u1", "A", "o1", 10), ("u1", "B", "o1", 10), ("u2", "A", "o2", 10), ("u2", "A", "o3", 10)]
    rows += [("u2", "B", "o2", 10), ("u2", "C", "o3", 10)]
    similar = settings.candidates.similar_users.model_copy(update={"neighbours": 1})
    users = spark.createDataFrame([("u1",)], "user_id string")

    def offered(items_per_neighbour: int | None) -> list[str]:
        capped = similar.model_copy(update={"items_per_neighbour": items_per_neighbour})
        result = similar_users(purchases(spark, rows), users, AS_OF, capped, limit=10)
        return [r.item_id for r in result.orderBy("source_rank").collect()]

    assert offered(None) == ["A", "B", "C"]
    assert offered(1) == ["A"]


def test_a_users_candidates_do_not_depend_on_whom_else_they_are_for(
    spark: SparkSession, settings: Settings
) -> None:
    """A training cut-off proposes for a sample of the users only: each source fits on everyone's
    purchases, so the sample's candidates are the rows they have when everyone gets candidates."""
    rows = []
    for g, group_items in enumerate(["ABCDE", "VWXYZ"]):
        for u in range(6):
            for j, item in enumerate(group_items):
                if (u + j) % 5 != 0:
                    rows.append((f"g{g}u{u}", item, f"o{g}{u}{j % 2}", 3 + 20 * (j % 2)))
    p = purchases(spark, rows).withColumn(S.UNIT_PRICE, F.lit(1.0))
    users = sorted({r[0] for r in rows})
    segments = spark.createDataFrame(
        [(u, int(u[1]), f"s{u[1]}") for u in users], "user_id string, segment_id int, segment_label string"
    )
    items = spark.createDataFrame([(i, i) for i in "ABCDEVWXYZ"], "item_id string, title string")
    # the sources that fit on all users' purchases (ALS and content take the users only at the end)
    fitted = ["buy_again", "popularity", "segment_popularity", "co_occurrence", "similar_users"]
    c = settings.candidates
    limits = dict.fromkeys(c.limits, 0) | dict.fromkeys(fitted, 4)
    tuned = c.model_copy(update={"limits": limits, "min_co_count": 1})
    inputs = SourceInputs(p, purchase_history(p), segments, items, None, tuned, AS_OF)
    sample = spark.createDataFrame([("g0u1",), ("g1u4",), ("nobody",)], "user_id string")
    for_everyone = generate_candidates(inputs).join(sample, S.USER_ID, "left_semi")
    for_the_sample = generate_candidates(dataclasses.replace(inputs, targets=sample))
    assert for_the_sample.select("source").distinct().count() == len(fitted)
    key = [S.USER_ID, "source", "source_rank"]
    assert_approx_df_equality(
        for_the_sample.orderBy(*key), for_everyone.orderBy(*key), precision=1e-9, ignore_nullable=True
    )


def test_a_customer_without_a_purchase_gets_the_popular_items_on_the_runs_date_only(
    spark: SparkSession, settings: Settings
) -> None:
    p = purchases(
        spark, [("u1", "A", "o1", 3), ("u2", "A", "o2", 5), ("u2", "B", "o2", 5), ("u2", "C", "o3", 9)]
    )
    segments = spark.createDataFrame(
        [(u, 0, "all") for u in ("u1", "u2", "u9")], "user_id string, segment_id int, segment_label string"
    )
    c = settings.candidates
    only_buy_again = dict.fromkeys(c.limits, 0) | {"buy_again": 4}
    tuned = c.model_copy(update={"limits": only_buy_again, "cold_start_popular": 2})
    inputs = SourceInputs(p, purchase_history(p), segments, p, None, tuned, AS_OF)

    def proposed(i: SourceInputs) -> set[tuple[str, str, str]]:
        return {(r.user_id, r.source, r.item_id) for r in generate_candidates(i).collect()}

    buy_again_rows = {("u1", "buy_again", "A"), *[("u2", "buy_again", i) for i in "ABC"]}
    # u9 bought no product: the two most popular items (A: two buyers, then B, the newer of B and C)
    assert proposed(inputs) == buy_again_rows | {("u9", "popularity", "A"), ("u9", "popularity", "B")}
    # a training cut-off's sample: the ranker learns from the sources only
    sample = spark.createDataFrame([("u1",), ("u9",)], "user_id string")
    assert proposed(dataclasses.replace(inputs, targets=sample)) == {("u1", "buy_again", "A")}
    # the popularity source on: it proposes for everyone, no second list
    with_popularity = tuned.model_copy(update={"limits": only_buy_again | {"popularity": 1}})
    rows = proposed(dataclasses.replace(inputs, settings=with_popularity))
    assert rows == buy_again_rows | {(u, "popularity", "A") for u in ("u1", "u2", "u9")}


def test_candidate_contract(spark: SparkSession) -> None:
    assert S.CONTRACTS[S.CANDIDATES].names[:6] == [
        "user_id",
        "item_id",
        "source",
        "source_score",
        "source_rank",
        "detail",
    ]


def test_an_item_first_seen_on_or_after_the_date_is_never_proposed(
    spark: SparkSession, store: TableStore, settings: Settings
) -> None:
    """The catalog as of the date: Z, first sold at midnight of AS_OF, has A's title embedding, so the
    content source would propose it to A's buyer; as of AS_OF it does not exist yet, a day later it does."""
    from genre_spark.candidates import run_candidates
    from tests.conftest import in_contract

    lines = [("u1", "A", "o1", 5), ("u2", "A", "o2", 5), ("u2", "B", "o2", 5), ("u3", "Z", "o3", -1)]
    events = purchases(spark, lines).select(
        F.concat_ws("-", S.ORDER_ID, S.ITEM_ID).alias(S.EVENT_ID),
        "*",
        F.lit(S.PURCHASE).alias(S.EVENT_TYPE),
        F.lit(1.0).alias(S.UNIT_PRICE),
    )
    midnight = dt.datetime.combine(AS_OF, dt.time())
    items = spark.createDataFrame(
        [(i, i, True, 0, day(5) if i != "Z" else midnight) for i in "ABZ"],
        f"{S.ITEM_ID} string, {S.TITLE} string, {S.IS_PRODUCT} boolean, {S.CATEGORY_ID} int, "
        f"{S.FIRST_SEEN_TS} timestamp",
    )
    vectors = {"A": [1.0, 0.0], "B": [0.0, 1.0], "Z": [1.0, 0.0]}
    embeddings = spark.createDataFrame(
        [(i, v, "test") for i, v in vectors.items()], S.CONTRACTS[S.ITEM_EMBEDDINGS]
    )
    only_content = {source: 0 for source in settings.candidates.limits} | {"content": 5}
    candidate_settings = settings.candidates.model_copy(update={"limits": only_content})

    def proposed(as_of: dt.date) -> set[tuple[str, str]]:
        segments = spark.createDataFrame(
            [(u, 0, as_of) for u in ("u1", "u2")], f"{S.USER_ID} string, {S.SEGMENT_ID} int, {S.AS_OF} date"
        )
        for table, df in [
            (S.EVENTS, events),
            (S.ITEMS, items),
            (S.ITEM_EMBEDDINGS, embeddings),
            (S.USER_SEGMENTS, segments),
        ]:
            store.write_table(in_contract(df, table), table, mode="overwrite", run_id=f"setup-{as_of}")
        run_candidates(store, History.read(store, as_of), candidate_settings, f"run-{as_of}")
        written = store.read_table(S.CANDIDATES).filter(F.col(S.AS_OF) == as_of)
        return {(r.user_id, r.item_id) for r in written.collect()}

    assert ("u1", "Z") not in proposed(AS_OF) and ("u1", "B") in proposed(AS_OF)
    assert ("u1", "Z") in proposed(AS_OF + dt.timedelta(days=1))
