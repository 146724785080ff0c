"""The similar-users source's recall and time against its two cost knobs, on the real sample.

    python benchmarks/similar_users.py --warehouse warehouse --as-of 2011-09-01

W (--warehouse) holds a run of the sample as of the date (events, items, user_segments: what
`genre-spark run --as-of 2011-09-01` leaves). For each setting the source proposes up to
candidates.limits.similar_users items to every user with a segment; the recall is the share of the
evaluation protocol's truth pairs (purchases in the next --horizon-days, `evaluation.protocol_truth`,
*all* and *new*) that it proposes. Settings: the packaged defaults with `items_per_neighbour` in --caps
(none = every item) at 50 neighbours, then `neighbours` in --neighbours at the default cap. Times are wall
seconds of one run each (the first includes the cached inputs).

Results: benchmarks/results/similar_users.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from machine import write_report  # benchmarks/machine.py (scripts run from their folder)
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.candidates import similar_users
from genre_spark.config import SimilarUserSettings, load_settings
from genre_spark.evaluation import ITEMS_COL, VARIANT, protocol_truth
from genre_spark.history import History
from genre_spark.session import build_spark_session
from genre_spark.storage import open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "similar_users.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2011, 9, 1))
    parser.add_argument("--horizon-days", type=int, default=100)
    parser.add_argument("--caps", nargs="+", default=["none", "200", "100", "50"])
    parser.add_argument("--neighbours", nargs="+", type=int, default=[30, 20])
    args = parser.parse_args()
    settings = load_settings([ROOT / "conf" / "local.yaml"], [f"storage.warehouse={args.warehouse}"])
    spark = build_spark_session(settings.spark)
    store = open_store(spark, settings.storage)
    events, items = store.read_table(S.EVENTS), store.read_table(S.ITEMS)
    purchases = History.read(store, args.as_of).purchases().cache()
    users = store.read_table(S.USER_SEGMENTS).filter(F.col(S.AS_OF) == args.as_of).select(S.USER_ID)
    end = args.as_of + dt.timedelta(days=args.horizon_days)
    truth = protocol_truth(events, items, args.as_of, end).lists
    pairs = truth.select(VARIANT, S.USER_ID, F.explode(ITEMS_COL).alias(S.ITEM_ID)).cache()
    base = settings.candidates.similar_users
    limit = settings.candidates.limits["similar_users"]
    cases: list[tuple[str, SimilarUserSettings]] = [
        (
            f"items_per_neighbour {cap}",
            base.model_copy(
                update={"neighbours": 50, "items_per_neighbour": None if cap == "none" else int(cap)}
            ),
        )
        for cap in args.caps
    ]
    cases += [(f"neighbours {n}", base.model_copy(update={"neighbours": n})) for n in args.neighbours]
    table = ["| setting | recall all | recall new | s |", "|---|---:|---:|---:|"]
    for name, case in cases:
        started = time.perf_counter()
        proposed = (
            similar_users(purchases, users, args.as_of, case, limit).select(S.USER_ID, S.ITEM_ID).cache()
        )
        proposed.count()
        seconds = time.perf_counter() - started
        found = pairs.join(proposed.withColumn("_hit", F.lit(1.0)), [S.USER_ID, S.ITEM_ID], "left")
        recall = {
            r[VARIANT]: r["recall"]
            for r in found.groupBy(VARIANT)
            .agg(F.avg(F.coalesce("_hit", F.lit(0.0))).alias("recall"))
            .collect()
        }
        table.append(f"| {name} | {recall['all']:.4f} | {recall['new']:.4f} | {seconds:.1f} |")
        print(table[-1], flush=True)
        proposed.unpersist()
    spark.stop()
    write_report(
        RESULTS,
        "The similar-users source: recall against its cost knobs",
        f"python benchmarks/similar_users.py --warehouse {args.warehouse} --as-of {args.as_of}",
        f"the real sample; truth: purchases in [{args.as_of}, {end}) (the evaluation protocol); "
        f"{limit} items per user; defaults {base.neighbours} neighbours, items_per_neighbour "
        f"{base.items_per_neighbour}.",
        table,
    )


if __name__ == "__main__":
    main()
