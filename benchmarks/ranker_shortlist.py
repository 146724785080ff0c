"""The discriminator's work as of the run's date with the ranker on a per-user shortlist, in one run.

    python benchmarks/ranker_shortlist.py --warehouse W --conf W/../data/genre-spark.yaml --as-of DATE

W: a warehouse holding the date's candidates, segments and a saved ranker (what `benchmarks/scale.py --keep`
leaves; DATE its run date). Each case builds the pair features of the date's candidates
(:func:`genre_spark.learned.features.pair_features`) and scores them with the saved ranker, into Spark's
noop sink: every candidate (reference) against each user's ``--shortlist`` best by the unweighted sum of
the normalised source scores (``discriminator.shortlist``). Interleaved over ``--repeat`` rounds. Settings:
conf/local.yaml + conf/scale.yaml + --conf. Results: benchmarks/results/ranker_shortlist.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from machine import (  # benchmarks/machine.py
    compute,
    first_strategy_indices,
    interleaved,
    ratio_table,
    scale_settings,
    write_report,
)
from pyspark import StorageLevel
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.history import History
from genre_spark.learned import model as M
from genre_spark.learned.features import pair_features
from genre_spark.learned.stage import MODEL_KIND, ModelNote, score_pairs
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

RESULTS = Path(__file__).parent / "results" / "ranker_shortlist.md"
REFERENCE = "every candidate (reference)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--conf", type=Path, action="append", default=[])
    parser.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--shortlist", type=int, nargs="+", default=[200])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    settings = scale_settings(args.conf, [f"storage.warehouse={args.warehouse}"])
    label_days = settings.discriminator.label_days
    spark = build_spark_session(settings.spark)
    try:
        store = open_store(spark, settings.storage)
        note = ModelNote.from_json(store.read_model_note(MODEL_KIND, store.latest_model(MODEL_KIND)) or "")
        ranker = M.load(store.model_path(MODEL_KIND, note.run_id))
        on = F.col(S.AS_OF) == F.lit(args.as_of)
        purchases = History.read(store, args.as_of).purchases().persist(StorageLevel.MEMORY_AND_DISK)
        indices = first_strategy_indices(store.read_table(S.USER_SEGMENTS).filter(on), settings)
        candidates = store.read_table(S.CANDIDATES).filter(on)

        def scored(shortlist: int | None) -> None:
            pairs = pair_features(
                candidates, purchases, indices, None, args.as_of, label_days, shortlist=shortlist
            )
            compute(score_pairs(pairs, ranker, None))

        cases = {REFERENCE: lambda: scored(None)}
        cases |= {f"shortlist {n}": (lambda n=n: scored(n)) for n in args.shortlist}
        times = interleaved(cases, args.repeat)
        pairs = candidates.select(S.USER_ID, S.ITEM_ID).distinct().count()
        users = candidates.select(S.USER_ID).distinct().count()
    finally:
        spark.stop()
    setup = (
        f"{pairs:,} candidate pairs of {users:,} users as of {args.as_of} ({pairs / users:.0f} a user), "
        f"the ranker {note.run_id} ({len(note.columns)} features); {args.repeat} interleaved round(s)."
    )
    command = (
        f"python benchmarks/ranker_shortlist.py --warehouse W --conf D/genre-spark.yaml --as-of {args.as_of} "
        f"--shortlist {' '.join(map(str, args.shortlist))} --repeat {args.repeat}"
    )
    table = ratio_table(times, REFERENCE, "pair features and scoring as of the date")
    write_report(RESULTS, "The ranker on a per-user shortlist", command, setup, table)


if __name__ == "__main__":
    main()
