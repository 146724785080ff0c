"""What `spark.sql.requireAllClusterKeysForCoPartition: false` (conf/default.yaml) buys the per-pair work,
in one run: the ranker's pair features as of T and the ranking of T.

    python benchmarks/copartition.py --work DIR

DIR: what `benchmarks/ranker.py --work DIR` leaves (its warehouse, with the candidates, segments and ranker
scores of T, and its generated source config). Both steps repartition the date's candidates by user once;
with the setting false (shipped), their joins by (user, item) read that partitioning; with Spark's default
(true), each such join shuffles both sides again by its full key. Interleaved over ``--repeat`` rounds, the
setting switched in the session before each case, into Spark's noop sink.

Results: benchmarks/results/copartition.md, medians and ratios to Spark's default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from machine import compute, interleaved, ratio_table, write_report  # benchmarks/machine.py
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.history import History
from genre_spark.learned.features import pair_features
from genre_spark.learned.stage import MODEL_KIND, ModelNote, strategy_indices
from genre_spark.ranking import RankingInputs, rank
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store
from genre_spark.strategy import context_for, load_strategies

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "copartition.md"
SETTING = "spark.sql.requireAllClusterKeysForCoPartition"
DEFAULT, SHIPPED = "Spark's default (true)", "shipped (false)"


def with_setting(spark: SparkSession, value: str, frame: Callable[[], DataFrame]) -> Callable[[], None]:
    def run() -> None:
        spark.conf.set(SETTING, value)
        compute(frame())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="benchmarks/ranker.py's --work")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    conf = [
        ROOT / "conf" / "local.yaml",
        ROOT / "conf" / "scale.yaml",
        args.work / "data" / "genre-spark.yaml",
    ]
    settings = load_settings(conf, [f"storage.warehouse={args.work / 'warehouse'}"])
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        note = ModelNote.from_json(store.read_model_note(MODEL_KIND, store.latest_model(MODEL_KIND)) or "")
        as_of = note.as_of
        on_date = F.col(S.AS_OF) == F.lit(as_of)
        history = History.read(store, as_of)
        purchases = history.purchases().persist(StorageLevel.MEMORY_AND_DISK)
        book = load_strategies(settings.strategies_file)
        segments = store.read_table(S.USER_SEGMENTS).filter(on_date)
        # the strategy index is one feature, the same in both cases: every segment gets the first strategy
        ids = segments.select(S.SEGMENT_ID).distinct().collect()  # one row per segment
        indices = strategy_indices(segments, {r[0]: next(iter(book.strategies)) for r in ids}, book)
        candidates = store.read_table(S.CANDIDATES).filter(on_date)
        label_days = settings.discriminator.label_days
        inputs = RankingInputs.read(store, history)
        context = context_for(as_of, 9, settings.features.hour_bands)

        def features() -> DataFrame:
            return pair_features(candidates, purchases, indices, None, as_of, label_days)

        def ranking() -> DataFrame:
            return rank(spark, inputs, book, context, settings.ranking.k, "bench", "bench")

        cases = {
            f"features, {DEFAULT}": with_setting(spark, "true", features),
            f"features, {SHIPPED}": with_setting(spark, "false", features),
            f"ranking, {DEFAULT}": with_setting(spark, "true", ranking),
            f"ranking, {SHIPPED}": with_setting(spark, "false", ranking),
        }
        times = interleaved(cases, args.repeat)
        rows, users = candidates.count(), segments.count()
    finally:
        spark.stop()
    setup = f"{rows:,} candidate rows for {users:,} users as of {as_of}; {args.repeat} interleaved rounds."
    command = f"python benchmarks/copartition.py --work DIR --repeat {args.repeat}"
    table: list[str] = []
    for step in ("features", "ranking"):
        mine = {name.split(", ", 1)[1]: t for name, t in times.items() if name.startswith(step)}
        table += [*ratio_table(mine, DEFAULT, f"{step} as of T"), ""]
    write_report(RESULTS, "Pair joins on the user partitioning", command, setup, table[:-1])


if __name__ == "__main__":
    main()
