"""The scoring stage: shortlist candidates, build texts, run every enabled scorer, write ``scores``."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidate_scores import shortlist
from genre_spark.config import ScoringSettings
from genre_spark.history import History
from genre_spark.scoring.scorers import Scorer, ScoringInputs, build_scorers
from genre_spark.scoring.texts import item_texts, profile_texts
from genre_spark.storage import TableStore, WriteResult


@dataclass(frozen=True)
class ScoringReport:
    as_of: dt.date
    per_scorer: dict[str, tuple[int, float]]  # scorer -> (pairs scored, mean score)
    write: WriteResult | None  # None (or the date's partition emptied) when no scorer is enabled

    def format(self) -> str:
        if not self.per_scorer:
            return f"scoring as of {self.as_of}: no scorer enabled (scoring.<scorer>.enabled)"
        lines = [f"scoring as of {self.as_of}:"]
        lines += [
            f"  {name:<14} {pairs:>9,} pairs  mean score {mean:.3f}"
            for name, (pairs, mean) in self.per_scorer.items()
        ]
        return "\n".join(lines)


def score_candidates(
    scorers: Sequence[Scorer],
    candidates: DataFrame,
    profiles: DataFrame,
    items: DataFrame,
    item_vectors: DataFrame | None,
) -> DataFrame:
    """(user_id, item_id, scorer, score, model): each scorer on its top-N of every user's shortlist."""
    longest = shortlist(candidates, max(s.top_n for s in scorers))
    frames = []
    for scorer in scorers:
        pairs = longest.filter(F.col("shortlist_rank") <= scorer.top_n).select(S.USER_ID, S.ITEM_ID)
        scored = scorer.spark_scores(ScoringInputs(pairs, profiles, items, item_vectors))
        frames.append(
            scored.select(
                S.USER_ID,
                S.ITEM_ID,
                F.lit(scorer.name).alias("scorer"),
                F.col("score").cast("double"),
                F.lit(scorer.spec.model_path).alias("model"),
            )
        )
    return functools.reduce(DataFrame.unionByName, frames)


def run_scoring(store: TableStore, history: History, settings: ScoringSettings, run_id: str) -> ScoringReport:
    as_of = history.as_of
    scorers = build_scorers(settings)  # paths, tokenizers and answer tokens checked before any Spark job
    if not scorers:
        if not store.exists(S.SCORES):
            return ScoringReport(as_of, {}, None)
        # an earlier run's scores for this date must not reach the ranking
        write = store.delete_where(S.SCORES, f"{S.AS_OF} = '{as_of.isoformat()}'", run_id=run_id)
        return ScoringReport(as_of, {}, write)
    on_date = F.col(S.AS_OF) == F.lit(as_of)
    profiles = profile_texts(
        store.read_table(S.USER_SEGMENTS).filter(on_date),
        store.read_table(S.USER_FEATURES).filter(on_date),
        history,
        settings.profile,
    )
    # title vectors from the enrich stage, when they came from the bi-encoder's model
    embeddings = store.read_table(S.ITEM_EMBEDDINGS).filter(
        F.col("model") == F.lit(settings.bi_encoder.model)
    )
    item_vectors = embeddings if embeddings.limit(1).count() else None
    scores = score_candidates(
        scorers,
        store.read_table(S.CANDIDATES).filter(on_date),
        profiles,
        item_texts(history.items),
        item_vectors,
    ).withColumn(S.AS_OF, F.lit(as_of).cast("date"))
    write = store.replace_date(scores, S.SCORES, as_of=as_of, run_id=run_id, stage="scoring")
    summary = (
        store.read_table(S.SCORES)
        .filter(on_date)
        .groupBy("scorer")
        .agg(F.count("*").alias("n"), F.mean("score").alias("mean"))
        .collect()  # one row per scorer
    )
    per_scorer = {r["scorer"]: (int(r["n"]), float(r["mean"])) for r in sorted(summary, key=lambda r: r[0])}
    return ScoringReport(as_of, per_scorer, write)
