"""Table names, column names and the Spark schema of every table contract (DESIGN section 2).

Every field is nullable on purpose: delta-rs does not enforce NOT NULL at commit, so the library
checks the contract itself (``genre_spark.storage.contract``) and keeps the Delta schema permissive.
"""

from __future__ import annotations

from pyspark.sql import types as T

# Table names
EVENTS = "events"
ITEMS = "items"
USERS = "users"
QUARANTINE = "quarantine"
ITEM_EMBEDDINGS = "item_embeddings"
USER_FEATURES = "user_features"
USER_SEGMENTS = "user_segments"
SEGMENT_PROFILES = "segment_profiles"
CANDIDATES = "candidates"
RECOMMENDATIONS = "recommendations"
SCORES = "scores"
RANKER_SCORES = "ranker_scores"  # the learned ranker's score per candidate
INGESTED_FILES = "ingested_files"  # input files an incremental (folder) source has already ingested
RUNS = "runs"  # one row per completed run: what backfill skips
RECOMMENDATIONS_LATEST = "recommendations_latest"  # one row naming the newest as_of + run_id for consumers

# Column names shared across tables
EVENT_ID = "event_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
ORDER_ID = "order_id"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
EVENT_TS = "event_ts"
COUNTRY = "country"
SOURCE = "source"
RUN_ID = "run_id"
INGESTED_RUN_ID = "ingested_run_id"
TITLE = "title"
DESCRIPTION = "description"
PRICE_BAND = "price_band"
CATEGORY_ID = "category_id"
CATEGORY_LABEL = "category_label"
IS_PRODUCT = "is_product"
FIRST_SEEN_TS = "first_seen_ts"  # the item's first event: a run as of an earlier date does not see it
AS_OF = "as_of"
EMBEDDING = "embedding"
SEGMENT_ID = "segment_id"
SEGMENT_LABEL = "segment_label"
LEARNED_SCORE = "learned_score"  # the learned ranker's score (ranker_scores): higher first, within a user
LEARNED_NEW_SCORE = "learned_new_score"  # the new-items model's, for items the user never bought (or null)

# Candidate sources and language-model scorers, in the order their columns appear
CANDIDATE_SOURCES = (
    "buy_again",
    "popularity",
    "segment_popularity",
    "co_occurrence",
    "als",
    "content",
    "similar_users",
    "seasonal",
)
SCORER_NAMES = ("bi_encoder", "cross_encoder", "causal_lm")

# Fixed feature families (their boundaries are config): columns share_<name> in user_features.
HOUR_BANDS = ("night", "morning", "afternoon", "evening")
PRICE_BANDS = ("budget", "low", "mid", "high", "premium")  # equal-count price quantile bands, cheapest first
USER_FEATURE_NUMBERS = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "n_distinct_items",
    "tenure_days",
    "return_rate",
    "weekend_share",
    *[f"share_{b}" for b in HOUR_BANDS],
    *[f"share_{b}" for b in PRICE_BANDS],
)
_INT_FEATURES = {"recency_days", "frequency", "n_distinct_items", "tenure_days"}

# Event types
PURCHASE = "purchase"
RETURN = "return"
VIEW = "view"
CLICK = "click"
EVENT_TYPES = (PURCHASE, RETURN, VIEW, CLICK)

# Feedback, strategy state and evaluation (DESIGN section 2; genre_spark/feedback.py, genre_spark/metrics.py)
FEEDBACK_EVENTS = "feedback_events"
STRATEGY_STATE = "strategy_state"
METRICS = "metrics"
RECORDED_RUN_ID = "recorded_run_id"
IMPRESSION = "impression"
ADD_TO_CART = "add_to_cart"
FEEDBACK_EVENT_TYPES = (IMPRESSION, CLICK, ADD_TO_CART, PURCHASE)
STRATEGY_ID = "strategy_id"
# Feedback replay (genre_spark/replay.py): every replayed policy's lists, the report per week x policy
REPLAY_LISTS = "replay_lists"
REPLAY_REPORT = "replay_report"
POLICY = "policy"  # "adaptive" or the name of the fixed strategy


def _schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(name, dtype, nullable=True) for name, dtype in fields])


CONTRACTS: dict[str, T.StructType] = {
    EVENTS: _schema(
        (EVENT_ID, T.StringType()),
        (USER_ID, T.StringType()),
        (ITEM_ID, T.StringType()),
        (EVENT_TYPE, T.StringType()),
        (QUANTITY, T.IntegerType()),
        (UNIT_PRICE, T.DoubleType()),
        (EVENT_TS, T.TimestampType()),
        (ORDER_ID, T.StringType()),
        (COUNTRY, T.StringType()),
        (SOURCE, T.StringType()),
        (INGESTED_RUN_ID, T.StringType()),
    ),
    QUARANTINE: _schema(
        ("table", T.StringType()),
        (SOURCE, T.StringType()),
        ("raw", T.StringType()),
        ("reason", T.StringType()),
        ("detail", T.StringType()),
        (RUN_ID, T.StringType()),
    ),
    ITEMS: _schema(
        (ITEM_ID, T.StringType()),
        (TITLE, T.StringType()),
        (DESCRIPTION, T.StringType()),
        (UNIT_PRICE, T.DoubleType()),
        (PRICE_BAND, T.StringType()),
        (CATEGORY_ID, T.IntegerType()),
        (CATEGORY_LABEL, T.StringType()),
        (IS_PRODUCT, T.BooleanType()),
        (FIRST_SEEN_TS, T.TimestampType()),
    ),
    USERS: _schema(
        (USER_ID, T.StringType()),
        (COUNTRY, T.StringType()),
        ("first_event_ts", T.TimestampType()),
        ("last_event_ts", T.TimestampType()),
    ),
    ITEM_EMBEDDINGS: _schema(
        (ITEM_ID, T.StringType()),
        (EMBEDDING, T.ArrayType(T.FloatType())),
        ("model", T.StringType()),
    ),
    USER_FEATURES: _schema(
        (USER_ID, T.StringType()),
        (AS_OF, T.DateType()),
        *[(f, T.IntegerType() if f in _INT_FEATURES else T.DoubleType()) for f in USER_FEATURE_NUMBERS],
        ("category_shares", T.ArrayType(T.DoubleType())),
        ("top_category_ids", T.ArrayType(T.IntegerType())),
        ("top_category_shares", T.ArrayType(T.DoubleType())),
    ),
    USER_SEGMENTS: _schema(
        (USER_ID, T.StringType()),
        (AS_OF, T.DateType()),
        (SEGMENT_ID, T.IntegerType()),
        (SEGMENT_LABEL, T.StringType()),
        ("pc1", T.DoubleType()),
        ("pc2", T.DoubleType()),
        ("distance", T.DoubleType()),
        ("model_run_id", T.StringType()),
    ),
    SEGMENT_PROFILES: _schema(
        (AS_OF, T.DateType()),
        (RUN_ID, T.StringType()),
        (SEGMENT_ID, T.IntegerType()),
        (SEGMENT_LABEL, T.StringType()),
        ("size", T.LongType()),
        ("share", T.DoubleType()),
        ("means", T.MapType(T.StringType(), T.DoubleType())),
        ("medians", T.MapType(T.StringType(), T.DoubleType())),
        ("z_scores", T.MapType(T.StringType(), T.DoubleType())),
        ("k", T.IntegerType()),
        ("silhouette", T.DoubleType()),
        ("silhouette_by_k", T.MapType(T.IntegerType(), T.DoubleType())),
        ("pca_components", T.IntegerType()),
        ("explained_variance", T.ArrayType(T.DoubleType())),
        ("model_run_id", T.StringType()),
    ),
    CANDIDATES: _schema(
        (USER_ID, T.StringType()),
        (ITEM_ID, T.StringType()),
        ("source", T.StringType()),
        ("source_score", T.DoubleType()),
        ("source_rank", T.IntegerType()),
        ("detail", T.StringType()),
        (AS_OF, T.DateType()),
    ),
    RANKER_SCORES: _schema(
        (USER_ID, T.StringType()),
        (ITEM_ID, T.StringType()),
        (LEARNED_SCORE, T.DoubleType()),
        (LEARNED_NEW_SCORE, T.DoubleType()),
        ("model_run_id", T.StringType()),
        (AS_OF, T.DateType()),
    ),
    SCORES: _schema(
        (USER_ID, T.StringType()),
        (ITEM_ID, T.StringType()),
        ("scorer", T.StringType()),
        ("score", T.DoubleType()),
        ("model", T.StringType()),
        (AS_OF, T.DateType()),
    ),
    RECOMMENDATIONS: _schema(
        (RUN_ID, T.StringType()),
        (AS_OF, T.DateType()),
        (USER_ID, T.StringType()),
        ("rank", T.IntegerType()),
        (ITEM_ID, T.StringType()),
        ("score", T.DoubleType()),
        (SEGMENT_ID, T.IntegerType()),
        ("strategy_id", T.StringType()),
        ("sources", T.ArrayType(T.StringType())),
        ("explanation", T.StringType()),
        ("model_version", T.StringType()),
    ),
    FEEDBACK_EVENTS: _schema(
        (RUN_ID, T.StringType()),  # the run that served the list the event is about
        (USER_ID, T.StringType()),
        (ITEM_ID, T.StringType()),
        (EVENT_TYPE, T.StringType()),  # one of FEEDBACK_EVENT_TYPES
        (EVENT_TS, T.TimestampType()),
        (SOURCE, T.StringType()),  # the feedback source, or "purchases" (derived from events)
        (RECORDED_RUN_ID, T.StringType()),  # the run whose feedback stage recorded it
    ),
    STRATEGY_STATE: _schema(
        (SEGMENT_LABEL, T.StringType()),  # stable across refits (segment ids are not)
        ("context", T.StringType()),  # "<weekday|weekend>/<hour band|any>"
        (STRATEGY_ID, T.StringType()),
        ("alpha", T.DoubleType()),  # Beta posterior: prior alpha + conversions
        ("beta", T.DoubleType()),  # prior beta + impressions - conversions
        ("impressions", T.DoubleType()),  # decayed sums as of updated_as_of (half-life in days)
        ("conversions", T.DoubleType()),
        ("updated_as_of", T.DateType()),
        (RUN_ID, T.StringType()),
    ),
    METRICS: _schema(
        (RUN_ID, T.StringType()),
        (AS_OF, T.DateType()),
        ("model", T.StringType()),
        ("metric", T.StringType()),
        ("k", T.IntegerType()),  # null for metrics without a cut-off (user counts)
        (SEGMENT_ID, T.IntegerType()),  # null: all users
        ("value", T.DoubleType()),
        ("variant", T.StringType()),  # all | new
    ),
    # feedback replay (genre_spark/replay.py); replay_lists (below) is partitioned by (as_of, policy)
    REPLAY_REPORT: _schema(
        (RUN_ID, T.StringType()),  # the replayed week's run
        (AS_OF, T.DateType()),  # T: lists served as of T, purchases of [T, T + window_days)
        ("week", T.IntegerType()),  # 0, 1, ...
        (POLICY, T.StringType()),
        ("users_served", T.LongType()),
        ("impressions", T.LongType()),  # served items
        ("purchased_items", T.LongType()),  # served items the user bought in the window
        ("item_conversion", T.DoubleType()),  # purchased_items / impressions
        ("buyers", T.LongType()),  # served users who bought at least one served item
        ("user_conversion", T.DoubleType()),  # buyers / users_served
        ("ndcg", T.DoubleType()),  # NDCG@k against every purchase of the window (metrics.evaluate_lists)
        ("k", T.IntegerType()),
        ("strategies", T.StringType()),  # the policy's strategy mix: "balanced 60%, win_back 40%"
    ),
    # scheduled refresh (genre_spark/refresh.py)
    INGESTED_FILES: _schema(
        (SOURCE, T.StringType()),
        ("path", T.StringType()),  # as Spark lists it (a URI)
        (RUN_ID, T.StringType()),
        ("ingested_at", T.TimestampType()),
    ),
    RUNS: _schema(
        (RUN_ID, T.StringType()),
        (AS_OF, T.DateType()),
        ("stages", T.ArrayType(T.StringType())),
        ("seconds", T.DoubleType()),
        ("finished_at", T.TimestampType()),
    ),
    RECOMMENDATIONS_LATEST: _schema(
        (AS_OF, T.DateType()),
        (RUN_ID, T.StringType()),
        ("table_version", T.LongType()),  # version of `recommendations` when the pointer moved
        ("updated_at", T.TimestampType()),
    ),
}

# the lists of a replayed policy: recommendations rows + the policy
CONTRACTS[REPLAY_LISTS] = _schema(
    *[(f.name, f.dataType) for f in CONTRACTS[RECOMMENDATIONS].fields], (POLICY, T.StringType())
)


# The learned ranker's inputs (genre_spark.learned.features), by group: a model can leave groups out.
RANKER_FEATURES = "ranker_features"  # one row per candidate pair and cut-off, with the label when known
LABEL = "label"  # 1.0: the user bought the item in the label window after the cut-off
STRATEGY_INDEX = "strategy_index"  # position of the segment's strategy in the strategy book
DECAY_HALF_LIVES = (14, 60, 180, 365)  # days, of the decayed order counts
POPULARITY_WEEKS = (1, 4, 12)  # windows of the item's recent buyer counts


RANKER_FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "history": (
        "ui_orders",
        "ui_order_share",
        "ui_quantity_share",
        *[f"ui_decay_{h}d" for h in DECAY_HALF_LIVES],
        "ui_decay_60d_rank",
        "ui_days_since_last",
        "ui_days_since_first",
        "ui_gap_days",
        "ui_due",
        "ui_recent_order_share",
    ),
    "item": (
        *[f"item_buyers_{w}w" for w in POPULARITY_WEEKS],
        "item_trend_1w_4w",
        "item_trend_4w_12w",
        "item_repurchase_rate",
        "item_age_days",
        "item_price",
        "item_price_ratio",
    ),
    # a year back, over the days the label window covers (the sample's autumn is its Christmas season)
    "season": ("item_buyers_last_year", "item_season_trend", "ui_orders_last_year"),
    "user": ("u_orders", "u_distinct_items", "u_repeat_rate", "u_basket_size", "u_days_since_last_order"),
    "sources": (
        *[f"{s}_{part}" for s in CANDIDATE_SOURCES for part in ("score", "rank")],
        "n_sources",
    ),
    "lm": tuple(f"{name}_score" for name in SCORER_NAMES),
    "segment": (SEGMENT_ID, STRATEGY_INDEX),
}


def ranker_feature_columns() -> list[str]:
    return [c for cols in RANKER_FEATURE_GROUPS.values() for c in cols]


CONTRACTS[RANKER_FEATURES] = _schema(
    (USER_ID, T.StringType()),
    (ITEM_ID, T.StringType()),
    *[(c, T.DoubleType()) for c in ranker_feature_columns()],
    (LABEL, T.DoubleType()),
    (AS_OF, T.DateType()),
)


def contract(table: str) -> T.StructType | None:
    """The contract schema of ``table``, or None for tables without one (scratch tables, tests)."""
    return CONTRACTS.get(table)
