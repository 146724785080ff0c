"""Language-model scorers: the pure function and the Spark path agree, on tiny offline models.

The cross-encoder and causal LM are random-weight models built here and saved with
``save_pretrained``; the bi-encoder is the real offline MiniLM. Each loads through the production
path (``build_scorer``: config -> path check -> tokenizer check -> model in the Python workers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import CausalLMSettings, ScorerSettings, Settings
from genre_spark.enrich import embed_items
from genre_spark.errors import ConfigError
from genre_spark.scoring.scorers import (
    ITEM_TEXT,
    PROFILE_TEXT,
    BiEncoderScorer,
    Scorer,
    ScoringInputs,
    build_scorer,
)
from genre_spark.scoring.stage import run_scoring, score_candidates
from genre_spark.scoring.texts import item_texts, profile_texts
from genre_spark.scoring.udfs import pair_udf
from tests.conftest import history_of
from tests.tiny_models import save_causal_lm, save_cross_encoder

ITEMS = [
    ("i1", "WHITE HANGING HEART T-LIGHT HOLDER", "candle / holder", "mid"),
    ("i2", "PARTY BUNTING", "party / bunting", "low"),
    ("i3", "SPACEBOY LUNCH BOX", None, "high"),
    ("i4", "JUMBO BAG RED RETROSPOT", "bag / jumbo", None),
]
PROFILES = [
    ("u1", "Customer in segment 'high-value loyal'. Buys mostly: candle / holder. Recently: PARTY BUNTING."),
    ("u2", "Customer in segment 'new'."),
    ("u3", "Customer in segment 'bargain hunters'. Buys mostly: bag / jumbo; party / bunting."),
]
PAIRS = [(u, i) for u, _ in PROFILES for i, *_ in ITEMS] + [("u2", "i1")]  # a repeated pair too


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {
        "cross_encoder": str(save_cross_encoder(root / "cross")),
        "causal_lm": str(save_causal_lm(root / "causal")),
    }


def scorer_settings(settings: Settings, name: str, model: str, device: str = "cpu") -> ScorerSettings:
    base: ScorerSettings = getattr(settings.scoring, name)
    return base.model_copy(update={"enabled": True, "model": model, "batch_size": 2, "device": device})


def make_scorer(settings: Settings, name: str, model_dirs: dict[str, str], device: str = "cpu") -> Scorer:
    model = "minilm" if name == "bi_encoder" else model_dirs[name]
    scorer = build_scorer(name, scorer_settings(settings, name, model, device))
    scorer.check()
    return scorer


@pytest.fixture(scope="module")
def texts(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    items = spark.createDataFrame(
        [(i, t, c, b, True) for i, t, c, b in ITEMS],
        "item_id string, title string, category_label string, price_band string, is_product boolean",
    )
    profiles = spark.createDataFrame(PROFILES, f"user_id string, {PROFILE_TEXT} string")
    return profiles, item_texts(items)


def pure_scores(scorer: Scorer, items: DataFrame, pairs: list[tuple[str, str]]) -> np.ndarray:
    column = S.TITLE if isinstance(scorer, BiEncoderScorer) else ITEM_TEXT
    item_text = {r[S.ITEM_ID]: r[column] for r in items.collect()}
    profile = dict(PROFILES)
    return scorer.score([profile[u] for u, _ in pairs], [item_text[i] for _, i in pairs])


def spark_scores(
    spark: SparkSession,
    scorer: Scorer,
    texts: tuple[DataFrame, DataFrame],
    pairs: list[tuple[str, str]],
    partitions: int = 3,
    item_vectors: DataFrame | None = None,
) -> np.ndarray:
    profiles, items = texts
    frame = spark.createDataFrame(pairs, "user_id string, item_id string").repartition(partitions)
    rows = scorer.spark_scores(ScoringInputs(frame, profiles, items, item_vectors)).collect()
    by_pair = {(r[S.USER_ID], r[S.ITEM_ID]): r["score"] for r in rows}
    assert len(rows) == len(pairs)  # a repeated pair stays two rows
    return np.array([by_pair[p] for p in pairs])


SCORERS = ["bi_encoder", "cross_encoder", "causal_lm"]


@pytest.mark.parametrize("name", SCORERS)
def test_spark_matches_the_pure_function(
    spark: SparkSession,
    settings: Settings,
    model_dirs: dict[str, str],
    texts: tuple[DataFrame, DataFrame],
    name: str,
) -> None:
    scorer = make_scorer(settings, name, model_dirs)
    expected = pure_scores(scorer, texts[1], PAIRS)
    assert expected.shape == (len(PAIRS),) and np.isfinite(expected).all()
    assert expected.std() > 1e-3  # the scores differ, so agreement below means something
    # more partitions than rows: some Python workers get empty partitions
    np.testing.assert_allclose(spark_scores(spark, scorer, texts, PAIRS, partitions=16), expected, atol=1e-5)


@pytest.mark.parametrize("name", SCORERS)
def test_batch_of_one_and_input_order(
    spark: SparkSession,
    settings: Settings,
    model_dirs: dict[str, str],
    texts: tuple[DataFrame, DataFrame],
    name: str,
) -> None:
    scorer = make_scorer(settings, name, model_dirs)
    expected = pure_scores(scorer, texts[1], PAIRS)
    # the length sort inside a batch must not reorder the output
    np.testing.assert_allclose(pure_scores(scorer, texts[1], PAIRS[::-1])[::-1], expected, atol=1e-5)
    one = pure_scores(scorer, texts[1], PAIRS[:1])
    np.testing.assert_allclose(one, expected[:1], atol=1e-5)
    np.testing.assert_allclose(spark_scores(spark, scorer, texts, PAIRS[:1], partitions=1), one, atol=1e-5)
    assert spark_scores(spark, scorer, texts, [], partitions=2).shape == (0,)


def test_pair_udf_hands_the_pure_function_more_than_one_model_batch(spark: SparkSession) -> None:
    # the pure function sorts what it gets by length; one model batch per call would leave nothing to sort
    def call_size(profiles: Sequence[str], items: Sequence[str]) -> np.ndarray:
        return np.full(len(profiles), float(len(profiles)))

    frame = spark.createDataFrame([(f"p{i}", f"i{i}") for i in range(10)], "p string, i string").coalesce(1)
    rows = frame.select(pair_udf(call_size, batch_size=2)(F.col("p"), F.col("i")).alias("n")).collect()
    assert [r["n"] for r in rows] == [10.0] * 10


def test_bi_encoder_reuses_item_embeddings(
    spark: SparkSession, settings: Settings, model_dirs: dict[str, str], texts: tuple[DataFrame, DataFrame]
) -> None:
    scorer = make_scorer(settings, "bi_encoder", model_dirs)
    items = spark.createDataFrame(
        [(i, t, True) for i, t, *_ in ITEMS], "item_id string, title string, is_product boolean"
    )
    vectors = embed_items(items, scorer.spec, "minilm")
    reused = spark_scores(spark, scorer, texts, PAIRS, item_vectors=vectors)
    np.testing.assert_allclose(reused, pure_scores(scorer, texts[1], PAIRS), atol=1e-5)
    # cosine of normalised vectors: u1's profile names PARTY BUNTING as a recent item
    u1 = dict(zip([i for _, i in PAIRS[:4]], reused[:4], strict=True))
    assert max(u1, key=u1.__getitem__) == "i2"


@pytest.mark.gpu
@pytest.mark.parametrize("name", SCORERS)
def test_cuda_matches_cpu(
    settings: Settings, model_dirs: dict[str, str], texts: tuple[DataFrame, DataFrame], name: str
) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = pure_scores(make_scorer(settings, name, model_dirs), texts[1], PAIRS)
    gpu_settings = scorer_settings(
        settings, name, "minilm" if name == "bi_encoder" else model_dirs[name], "cuda"
    )
    gpu = build_scorer(name, gpu_settings.model_copy(update={"dtype": "float32"}))
    np.testing.assert_allclose(pure_scores(gpu, texts[1], PAIRS), cpu, atol=1e-4)


def test_missing_model_fails_on_the_driver_naming_scorer_and_path(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"scoring.cross_encoder.model: model path '/no/such/model'"):
        build_scorer("cross_encoder", scorer_settings(settings, "cross_encoder", "/no/such/model"))
    with pytest.raises(ConfigError, match=r"scoring.causal_lm.model: no model path configured"):
        build_scorer("causal_lm", settings.scoring.causal_lm)


def test_answers_must_be_single_tokens(settings: Settings, model_dirs: dict[str, str]) -> None:
    lm: CausalLMSettings = settings.scoring.causal_lm.model_copy(
        update={"model": model_dirs["causal_lm"], "yes_token": " Absolutely certainly"}
    )
    with pytest.raises(ConfigError, match=r"scoring.causal_lm: answer ' Absolutely certainly' is \d+ tokens"):
        build_scorer("causal_lm", lm).check()


def test_profile_and_item_texts(spark: SparkSession, settings: Settings) -> None:
    as_of = dt.date(2011, 6, 1)
    items = spark.createDataFrame(
        [
            ("i1", "HEART HOLDER", 1, "candle / holder", "mid", True),
            ("i2", "PARTY BUNTING", 2, "party / bunting", None, True),
            ("i3", "LUNCH BOX", None, None, "high", True),
            ("post", "POSTAGE", None, None, None, False),
        ],
        "item_id string, title string, category_id int, category_label string, price_band string, "
        "is_product boolean",
    )
    ts = "2011-05-{:02d} 10:00:00"
    events = spark.createDataFrame(
        [
            ("u1", "i1", "purchase", ts.format(1)),
            ("u1", "i2", "purchase", ts.format(3)),
            ("u1", "i3", "purchase", ts.format(2)),
            ("u1", "post", "purchase", ts.format(4)),  # not a product: never in a profile
            ("u1", "i3", "purchase", "2011-06-01 00:00:00"),  # on the as-of date: not yet known
            ("u2", "i1", "return", ts.format(5)),
        ],
        "user_id string, item_id string, event_type string, ts string",
    ).select(
        "user_id",
        "item_id",
        "event_type",
        F.to_timestamp("ts").alias("event_ts"),
        F.lit("o").alias("order_id"),
        F.lit(1).alias("quantity"),
        F.lit(1.0).alias("unit_price"),
    )
    segments = spark.createDataFrame([("u1", "loyal"), ("u2", "new")], "user_id string, segment_label string")
    features = spark.createDataFrame(
        [("u1", [2, 1]), ("u2", [])], "user_id string, top_category_ids array<int>"
    )
    profile = settings.scoring.profile.model_copy(
        update={"recent_items": 2, "top_categories": 2, "max_chars": 300}
    )
    got = {
        r[S.USER_ID]: r[PROFILE_TEXT]
        for r in profile_texts(segments, features, history_of(events, items, as_of), profile).collect()
    }
    assert got == {
        "u1": "Customer in segment 'loyal'. Buys mostly: party / bunting; candle / holder. "
        "Recently: PARTY BUNTING, LUNCH BOX.",
        "u2": "Customer in segment 'new'.",
    }
    short = profile.model_copy(update={"max_chars": 40})
    cut = (
        profile_texts(segments, features, history_of(events, items, as_of), short)
        .filter("user_id = 'u1'")
        .first()
    )
    assert cut is not None and len(cut[PROFILE_TEXT]) == 40
    described = {r[S.ITEM_ID]: r[ITEM_TEXT] for r in item_texts(items).collect()}
    assert described == {
        "i1": "HEART HOLDER (candle / holder; mid price)",
        "i2": "PARTY BUNTING (party / bunting)",
        "i3": "LUNCH BOX (high price)",
    }


def test_each_scorer_sees_its_top_n_of_the_shortlist(
    spark: SparkSession, settings: Settings, model_dirs: dict[str, str], texts: tuple[DataFrame, DataFrame]
) -> None:
    candidates = spark.createDataFrame(
        [
            ("u1", "i1", "buy_again", 4.0),
            ("u1", "i2", "buy_again", 2.0),
            ("u1", "i2", "als", 1.0),  # i2: 0.5 + 1.0 -> best of u1's shortlist
            ("u1", "i3", "als", 0.5),
            ("u1", "i4", "als", 0.1),
            ("u3", "i4", "als", 3.0),
        ],
        "user_id string, item_id string, source string, source_score double",
    )
    bi = make_scorer(settings, "bi_encoder", model_dirs)
    cross = make_scorer(settings, "cross_encoder", model_dirs)
    bi.top_n, cross.top_n = 3, 1
    profiles, items = texts
    rows = score_candidates([bi, cross], candidates, profiles, items, None).collect()
    seen = {(r["scorer"], r[S.USER_ID], r[S.ITEM_ID]) for r in rows}
    assert seen == {
        ("bi_encoder", "u1", "i2"),
        ("bi_encoder", "u1", "i1"),
        ("bi_encoder", "u1", "i3"),
        ("bi_encoder", "u3", "i4"),
        ("cross_encoder", "u1", "i2"),
        ("cross_encoder", "u3", "i4"),
    }
    assert all(r["model"] for r in rows)


def test_no_scorer_enabled_empties_the_dates_scores(spark: SparkSession, settings: Settings, store) -> None:
    """An earlier run's scores for the date must not reach the ranking once every scorer is off."""
    day, other = dt.date(2011, 12, 9), dt.date(2011, 12, 2)
    old = spark.createDataFrame(
        [("u1", "i1", "bi_encoder", 0.9, "m", day), ("u1", "i1", "bi_encoder", 0.5, "m", other)],
        S.contract(S.SCORES),
    )
    store.write_table(old, S.SCORES, mode="overwrite", run_id="old", partition_by=[S.AS_OF])
    off = settings.scoring.model_copy(
        update={"bi_encoder": settings.scoring.bi_encoder.model_copy(update={"enabled": False})}
    )
    empty = {t: spark.createDataFrame([], S.contract(t)) for t in (S.EVENTS, S.ITEMS)}
    report = run_scoring(store, history_of(empty[S.EVENTS], empty[S.ITEMS], day), off, "new")
    assert "no scorer enabled" in report.format()
    left = store.read_table(S.SCORES)
    assert left.filter(F.col(S.AS_OF) == day).count() == 0
    assert left.filter(F.col(S.AS_OF) == other).count() == 1
