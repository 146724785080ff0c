"""The discriminator stage: training data from the product's own history, the ranker, ``ranker_scores``.

For a run as of T, each training cut-off t (``training_cutoffs``) has the candidates the product proposed
as of t, their features from before t, and labels from the purchases of ``[t, t + label_days)``: every
label window ends on or before T. The features of each cut-off (and of T, unlabelled) are written to
``ranker_features``; the model is fitted on the cut-offs (or the latest one reused under the age policy),
saved under ``<warehouse>/_models/ranker/<run id>`` with a note of its dates and columns, and its score of
every candidate as of T is written to ``ranker_scores``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBRankerModel

from genre_spark import schemas as S
from genre_spark.config import DiscriminatorSettings
from genre_spark.errors import RankerMissingError
from genre_spark.history import YEAR_DAYS, History, purchases_between
from genre_spark.learned import model as M
from genre_spark.learned.features import feature_columns, pair_features
from genre_spark.storage import RUN_ID_KEY, TableStore, WriteResult
from genre_spark.strategy import StrategyBook

MODEL_KIND = "ranker"
NEW_ITEMS_KIND = "ranker_new_items"  # the second model, for the new-items mode (the newest cut-offs)


def training_cutoffs(as_of: dt.date, settings: DiscriminatorSettings) -> list[dt.date]:
    """Newest first; the newest cut-off's label window ends on ``as_of``; with ``year_back_cutoff``, last
    the date 52 weeks before ``as_of``, whose labels cover the weeks ahead of ``as_of`` a year earlier."""
    first = as_of - dt.timedelta(days=settings.label_days)
    recent = [first - dt.timedelta(days=i * settings.cutoff_step_days) for i in range(settings.cutoffs)]
    year_back = as_of - dt.timedelta(days=YEAR_DAYS)
    return [*recent, year_back] if settings.year_back_cutoff and year_back < recent[-1] else recent


def strategy_indices(segments: DataFrame, decisions: dict[int, str], book: StrategyBook) -> DataFrame:
    """(user_id, segment_id, strategy_index): the user's segment and its strategy's place in the book."""
    order = list(book.strategies)
    rows = [(segment, float(order.index(name))) for segment, name in decisions.items()]
    table = segments.sparkSession.createDataFrame(rows, "segment_id int, strategy_index double")
    return segments.select(S.USER_ID, S.SEGMENT_ID).join(F.broadcast(table), S.SEGMENT_ID, "left")


@contextmanager
def features_of(
    store: TableStore,
    history: History,
    decisions: dict[int, str],
    book: StrategyBook,
    settings: DiscriminatorSettings,
    labelled: bool,
) -> Iterator[DataFrame]:
    """The ``ranker_features`` rows of the history's date (lazy; its purchases persisted while the
    context is open): the features of the candidates the stages wrote for it (each user's ``shortlist``
    best when it is set; from the history only; the season features look at the ``label_days`` after the
    date, a year earlier), labelled by the purchases of ``[day, day + label_days)`` when ``labelled``."""
    day, label_days = history.as_of, settings.label_days
    on_day = F.col(S.AS_OF) == F.lit(day)
    segments = store.read_table(S.USER_SEGMENTS).filter(on_day)
    scores = store.read_table(S.SCORES).filter(on_day) if store.exists(S.SCORES) else None
    # read by five aggregations: one scan of the events
    purchases = history.purchases().persist(StorageLevel.MEMORY_AND_DISK)
    try:
        features = pair_features(
            store.read_table(S.CANDIDATES).filter(on_day),
            purchases,
            strategy_indices(segments, decisions, book),
            scores,
            day,
            label_days,
            sampled=labelled,  # a training cut-off's candidates may be for its sample only
            shortlist=settings.shortlist,
        )
        if not labelled:
            features = features.withColumn(S.LABEL, F.lit(None).cast("double"))
        else:
            end = day + dt.timedelta(days=label_days)
            features = with_labels(features, store.read_table(S.EVENTS), history.items, day, end)
        yield features.withColumn(S.AS_OF, F.lit(day).cast("date"))
    finally:
        purchases.unpersist()


def write_features(
    store: TableStore,
    history: History,
    decisions: dict[int, str],
    book: StrategyBook,
    run_id: str,
    settings: DiscriminatorSettings,
    labelled: bool,
) -> WriteResult:
    """Write the ``ranker_features`` partition of the history's date (:func:`features_of`)."""
    with features_of(store, history, decisions, book, settings, labelled) as features:
        return store.replace_date(
            features, S.RANKER_FEATURES, as_of=history.as_of, run_id=run_id, stage="discriminator"
        )


def with_labels(
    features: DataFrame, events: DataFrame, items: DataFrame, start: dt.date, end: dt.date
) -> DataFrame:
    """``features`` with ``label`` 1.0 where the user bought the item in ``[start, end)``, else 0.0."""
    bought = purchases_between(events, items, start, end).select(S.USER_ID, S.ITEM_ID).distinct()
    return (
        features.join(bought.withColumn("_bought", F.lit(1.0)), [S.USER_ID, S.ITEM_ID], "left")
        .select("*", F.coalesce(F.col("_bought"), F.lit(0.0)).alias(S.LABEL))
        .drop("_bought")
    )


def training_set(store: TableStore, cutoffs: list[dt.date], settings: DiscriminatorSettings) -> DataFrame:
    """The labelled features of the cut-offs, only users with at least one purchase in their label
    window (at most ``max_training_users`` of them per cut-off, a seeded hash sample)."""
    table = store.read_table(S.RANKER_FEATURES).filter(F.col(S.AS_OF).isin(*cutoffs))
    queries = table.groupBy(S.USER_ID, S.AS_OF).agg(F.max(S.LABEL).alias("_any"))
    queries = sample_users(queries.filter(F.col("_any") > 0), settings)
    return table.join(queries, [S.USER_ID, S.AS_OF], "left_semi")


def label_buyers(store: TableStore, history: History, settings: DiscriminatorSettings) -> DataFrame:
    """(user_id): who bought a product in the label window ``[day, day + label_days)`` of the history's
    date (``day`` a training cut-off); duplicates left in."""
    day = history.as_of
    end = day + dt.timedelta(days=settings.label_days)
    return purchases_between(store.read_table(S.EVENTS), history.items, day, end).select(S.USER_ID)


def feature_users(store: TableStore, history: History, settings: DiscriminatorSettings) -> DataFrame:
    """(user_id): whom a training cut-off's features and segments are computed for: the users with a
    purchase before it (those the features stage keeps) and one in its label window, at most
    ``max_training_users`` of them (the hash sample of :func:`sample_users`, so that
    :func:`training_users` then keeps them all). Nobody else's features reach the ranker."""
    ordered = history.of_type(S.PURCHASE).filter(F.col(S.ORDER_ID).isNotNull()).select(S.USER_ID)
    users = ordered.join(label_buyers(store, history, settings), S.USER_ID, "left_semi").distinct()
    return sample_users(users.withColumn(S.AS_OF, F.lit(history.as_of)), settings).select(S.USER_ID)


def training_users(store: TableStore, history: History, settings: DiscriminatorSettings) -> DataFrame:
    """(user_id): whom a training cut-off's candidates stage proposes for, the users its ranker can
    train on: those with a segment on the history's date and a purchase in its label window, at most
    ``max_training_users`` of them (the hash sample :func:`training_set` takes). Their labels end on or
    before the run's date, like every label."""
    day = history.as_of
    segmented = store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == F.lit(day))
    buyers = label_buyers(store, history, settings)
    users = segmented.select(S.USER_ID, S.AS_OF).join(buyers, S.USER_ID, "left_semi")
    return sample_users(users, settings).select(S.USER_ID)


def training_sample(settings: DiscriminatorSettings) -> str:
    """What :func:`training_users` selects, as a commit tag: a cut-off's candidates written for another
    sample (another label window, cap or seed) are not this one's."""
    cap = "all" if settings.max_training_users is None else f"{settings.max_training_users}"
    return f"buyers in {settings.label_days} days; {cap} per cut-off by hash, seed {settings.seed}"


def sample_users(queries: DataFrame, settings: DiscriminatorSettings) -> DataFrame:
    """(user_id, as_of) of ``queries``, at most ``max_training_users`` per date: those with the smallest
    seeded hashes of the user id (the same users for the same population and seed)."""
    if settings.max_training_users is None:
        return queries.select(S.USER_ID, S.AS_OF)
    entry = F.struct(F.xxhash64(S.USER_ID, F.lit(settings.seed)).alias("_h"), F.col(S.USER_ID))
    kept = queries.groupBy(S.AS_OF).agg(
        F.slice(F.array_sort(F.collect_list(entry)), 1, settings.max_training_users).alias("_k")
    )
    return kept.select(S.AS_OF, F.explode("_k.user_id").alias(S.USER_ID))


def label_recall(store: TableStore, cutoffs: list[dt.date], label_days: int) -> float:
    """The share of the (user, item) purchases of the label windows that the cut-offs' candidates hold:
    the ceiling of what any order of the candidates can find."""
    events, items = store.read_table(S.EVENTS), store.read_table(S.ITEMS)
    features = store.read_table(S.RANKER_FEATURES).filter(F.col(S.AS_OF).isin(*cutoffs))
    users = features.select(S.USER_ID, S.AS_OF).distinct()
    bought = [
        purchases_between(events, items, t, t + dt.timedelta(days=label_days))
        .select(S.USER_ID, S.ITEM_ID, F.lit(t).cast("date").alias(S.AS_OF))
        .distinct()
        for t in cutoffs
    ]
    windows = bought[0]
    for frame in bought[1:]:
        windows = windows.unionByName(frame)
    total = windows.join(users, [S.USER_ID, S.AS_OF], "left_semi").count()
    found = features.filter(F.col(S.LABEL) > 0).count()
    return found / total if total else float("nan")


@dataclass(frozen=True)
class ModelNote:
    """What a saved model was trained on: the reuse policy and ``ranker_scores`` read it."""

    run_id: str
    as_of: dt.date
    cutoffs: list[dt.date]
    columns: list[str]
    queries: int
    pairs: int
    positives: int
    importances: list[tuple[str, float]]
    fingerprint: str
    new_items: bool = False  # a new-items model was fitted beside it
    label_recall: float = float("nan")  # share of the label windows' purchases among the candidates

    def to_json(self) -> str:
        data = {
            **self.__dict__,
            "as_of": self.as_of.isoformat(),
            "cutoffs": [c.isoformat() for c in self.cutoffs],
        }
        return json.dumps(data, indent=1)

    @staticmethod
    def from_json(text: str) -> ModelNote:
        data = json.loads(text)
        return ModelNote(
            run_id=data["run_id"],
            as_of=dt.date.fromisoformat(data["as_of"]),
            cutoffs=[dt.date.fromisoformat(c) for c in data["cutoffs"]],
            columns=list(data["columns"]),
            queries=int(data["queries"]),
            pairs=int(data["pairs"]),
            positives=int(data["positives"]),
            importances=[(str(n), float(v)) for n, v in data["importances"]],
            fingerprint=str(data.get("fingerprint", "")),
            new_items=bool(data.get("new_items", False)),
            label_recall=float(data.get("label_recall", "nan")),
        )


def train(
    training: DataFrame, settings: DiscriminatorSettings, columns: list[str]
) -> tuple[SparkXGBRankerModel, tuple[int, int, int]]:
    """Fit the ranker; returns it with (queries, pairs, positives) of the training set."""
    kept = training.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        row = kept.agg(
            F.count_distinct(S.USER_ID, S.AS_OF).alias("q"),
            F.count("*").alias("n"),
            F.sum(S.LABEL).alias("p"),
        ).first()  # one row
        assert row is not None
        if not row["n"]:
            raise RankerMissingError(
                "the learned ranker has no training data: no candidate of its cut-offs was bought in the "
                "label window after it (too little history?); lower discriminator.label_days or "
                "discriminator.cutoffs, or set discriminator.enabled=false and give the strategies "
                "ranker: blend"
            )
        return M.fit(kept, settings, columns), (int(row["q"]), int(row["n"]), int(row["p"] or 0))
    finally:
        kept.unpersist()


def reusable_model(
    store: TableStore, as_of: dt.date, settings: DiscriminatorSettings, wanted: str
) -> ModelNote | None:
    """The latest saved model's note, when the age policy allows its reuse for ``as_of`` and it was
    trained as ``wanted`` (:func:`fingerprint`)."""
    latest = store.latest_model(MODEL_KIND) if settings.max_model_age_days > 0 else None
    text = store.read_model_note(MODEL_KIND, latest) if latest else None
    if text is None:
        return None
    note = ModelNote.from_json(text)
    fresh = dt.timedelta(0) <= as_of - note.as_of <= dt.timedelta(days=settings.max_model_age_days)
    return note if fresh and note.fingerprint == wanted else None


def fingerprint(settings: DiscriminatorSettings, columns: list[str], stage_settings: str) -> str:
    """What a model was trained with: its columns, every training knob (not the reuse policy) and the
    stage settings its cut-offs' candidates were made with (``RunContext.stage_settings``)."""
    knobs = settings.model_dump(exclude={"enabled", "max_model_age_days"})
    text = json.dumps({"columns": columns, "stages": stage_settings, **knobs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DiscriminatorReport:
    as_of: dt.date
    note: ModelNote
    trained: bool  # False: the latest model was reused (age policy)
    scored: int
    write: WriteResult
    seconds: dict[str, float]  # training features, fit, features as of the date, scoring

    def format(self) -> str:
        n = self.note
        how = "trained" if self.trained else f"reused (trained as of {n.as_of})"
        top = ", ".join(f"{name} {share:.0%}" for name, share in n.importances[:6])
        cutoffs = ", ".join(str(c) for c in n.cutoffs)
        return (
            f"learned ranker {n.run_id} {how}: cut-offs {cutoffs}; {n.queries:,} queries, {n.pairs:,} pairs, "
            f"{n.positives:,} bought ({n.positives / max(n.pairs, 1):.2%}); the candidates hold "
            f"{n.label_recall:.1%} of the label windows' purchases\n"
            f"  top features (gain): {top}\n"
            f"  {self.scored:,} candidates as of {self.as_of} scored (ranker_scores); seconds: "
            + ", ".join(f"{step} {t:.0f}" for step, t in self.seconds.items())
        )


Decide = Callable[[dt.date], dict[int, str]]  # day -> segment_id -> strategy name, from that day's segments


def features_run_id(store: TableStore, run_id: str, cutoff: dt.date) -> str:
    """The run id of a cut-off's ``ranker_features``: the run's, the cut-off, and the run that wrote its
    candidates, so that new candidates (another config rewrote them) mean new features."""
    written = store.partition_commit(S.CANDIDATES, cutoff) or {}
    return f"{run_id}-train-{cutoff}-of-{written.get(RUN_ID_KEY, 'unknown')}"


def fit_and_save(
    store: TableStore,
    settings: DiscriminatorSettings,
    decide: Decide,
    book: StrategyBook,
    as_of: dt.date,
    run_id: str,
    wanted: str,
    seconds: dict[str, float],
) -> ModelNote:
    """Features and labels of every training cut-off (``ranker_features``), the fit, the saved model."""
    started = time.perf_counter()
    cutoffs = training_cutoffs(as_of, settings)
    for t in cutoffs:
        history = History.read(store, t)
        write_features(
            store,
            history,
            decide(t),
            book,
            features_run_id(store, run_id, t),
            settings,
            labelled=True,
        )
    seconds["training features"] = time.perf_counter() - started
    started = time.perf_counter()
    columns = feature_columns(frozenset(settings.without))
    fitted, (queries, pairs, positives) = train(training_set(store, cutoffs, settings), settings, columns)
    M.save(fitted, store.model_path(MODEL_KIND, run_id))
    if settings.new_items_model:  # the same pairs, the newest cut-offs only (cutoffs are newest first)
        fitted_new = fitted  # when those are all the cut-offs, the same fit
        if settings.new_items_cutoffs < len(cutoffs):
            newest = training_set(store, cutoffs[: settings.new_items_cutoffs], settings)
            fitted_new, _ = train(newest, settings, columns)
        M.save(fitted_new, store.model_path(NEW_ITEMS_KIND, run_id))
    note = ModelNote(
        run_id,
        as_of,
        cutoffs,
        columns,
        queries,
        pairs,
        positives,
        M.importances(fitted),
        wanted,
        settings.new_items_model,
        label_recall(store, cutoffs, settings.label_days),
    )
    store.write_model_note(MODEL_KIND, run_id, note.to_json())
    store.set_latest_model(MODEL_KIND, run_id)
    seconds["fit"] = time.perf_counter() - started
    return note


def score_pairs(
    features: DataFrame, ranker: SparkXGBRankerModel, new_items: SparkXGBRankerModel | None
) -> DataFrame:
    """``features`` with ``learned_score`` (the ranker's) and ``learned_new_score`` (the ``new_items``
    model's, for the pairs the user never bought; null elsewhere, and everywhere without that model). One
    pass: the second model predicts on the rows the first one scored, no join of two scorings."""
    scored = M.predict(ranker, features).withColumnRenamed("score", S.LEARNED_SCORE)
    new_score = F.lit(None)
    if new_items is not None:
        scored = M.predict(new_items, scored)
        new_score = F.when(F.col("ui_orders") == 0, F.col("score"))
    return scored.select(
        *features.columns,
        F.col(S.LEARNED_SCORE).cast("double"),
        new_score.cast("double").alias(S.LEARNED_NEW_SCORE),
    )


def run_discriminator(
    store: TableStore,
    history: History,
    settings: DiscriminatorSettings,
    decide: Decide,
    book: StrategyBook,
    run_id: str,
    wanted: str,
    reused: ModelNote | None,
    keep_features: bool = False,
) -> DiscriminatorReport:
    """Train the ranker (or score with ``reused``, a saved model :func:`reusable_model` allows) and write
    its score of every candidate as of the history's date; ``wanted``: the :func:`fingerprint` a model
    trained now records. The date's features are scored as they are computed; with ``keep_features``
    they are written to ``ranker_features`` first and scored from there (what evaluate reads)."""
    as_of = history.as_of
    seconds: dict[str, float] = {}
    note = reused or fit_and_save(store, settings, decide, book, as_of, run_id, wanted, seconds)
    ranker = M.load(store.model_path(MODEL_KIND, note.run_id))
    new_items = M.load(store.model_path(NEW_ITEMS_KIND, note.run_id)) if note.new_items else None

    def write_scores(features: DataFrame) -> WriteResult:
        scored = score_pairs(features, ranker, new_items).select(
            S.USER_ID,
            S.ITEM_ID,
            S.LEARNED_SCORE,
            S.LEARNED_NEW_SCORE,
            F.lit(note.run_id).alias("model_run_id"),
            F.lit(as_of).cast("date").alias(S.AS_OF),
        )
        return store.replace_date(scored, S.RANKER_SCORES, as_of=as_of, run_id=run_id, stage="discriminator")

    started = time.perf_counter()
    if keep_features:
        write_features(store, history, decide(as_of), book, run_id, settings, labelled=False)
        seconds["features"] = time.perf_counter() - started
        started = time.perf_counter()
        write = write_scores(store.read_table(S.RANKER_FEATURES).filter(F.col(S.AS_OF) == F.lit(as_of)))
    else:
        with features_of(store, history, decide(as_of), book, settings, labelled=False) as features:
            write = write_scores(features)
    count = store.read_table(S.RANKER_SCORES).filter(F.col(S.AS_OF) == F.lit(as_of)).count()
    seconds["scoring" if keep_features else "features and scoring"] = time.perf_counter() - started
    return DiscriminatorReport(as_of, note, reused is None, count, write, seconds)
