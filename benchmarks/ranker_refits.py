"""Refit the learned ranker with other settings and seeds on an evaluated warehouse: NDCG@k, mean and spread.

    genre-spark evaluate --conf conf/local.yaml --as-of 2011-09-01 --horizon-days 100 \\
        --set storage.warehouse=W
    python benchmarks/ranker_refits.py --warehouse W --seeds 3 \\
        --try depth-4 discriminator.max_depth=4 --try no-lm 'discriminator.without=[segment,season,lm]'

`evaluate` scores one fit per variant, and a fit's seed (its column and row sampling) moves NDCG@10 about as
much as most parts the ranker can gain or lose: an effect is real when it stands clear of the seeds' spread.
Each trial is a set of overrides of the `--conf` files (always a `default` trial without any). For
each trial and seed: the training set of the trial's cut-offs from the stored `ranker_features` (the run or
evaluate that wrote them ran their stages; a missing cut-off is an error), one local `xgboost.XGBRanker` fit
with the product's booster parameters (`genre_spark.learned.model.booster_params`, the Spark estimator's; a
unit test checks the two fits agree), scored on the as-of date's features; lists and NDCG as `evaluate`
computes them (`top_k_lists`, `list_metrics`, `protocol_truth`; the new variant keeps the pairs the user never
bought). Both variants are the trial's one model's order: the product's new-items mode uses a second model
fitted on the newest cut-off, which is the trial `discriminator.cutoffs=1`. A fit takes about 80 s on the
sample on 2 cores.

Stage settings are not rerun here: the stored features are what they are. Trials change the ranker (its
`discriminator.*` settings and feature groups) or make the candidates shallower: with `candidates.limits.X=N`
below the stored limit, the trial keeps the pairs some source proposed within its new limit, in training and
in the lists, and a source's features read "not proposed" past it (the rows a rerun of the candidates stage
with those limits would give: a source's ranks and normalised scores do not depend on its depth).

Results: appended to benchmarks/results/ranker_refits.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import xgboost
from machine import describe  # benchmarks/machine.py (scripts run from their folder)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import CandidateSettings, Settings, load_settings
from genre_spark.errors import ConfigError
from genre_spark.evaluation import protocol_truth
from genre_spark.learned.features import MISSING_RANK, feature_columns
from genre_spark.learned.model import booster_params
from genre_spark.learned.stage import training_cutoffs, training_set
from genre_spark.metrics import MODEL, VARIANT, VARIANT_ALL, VARIANT_NEW, list_metrics, top_k_lists
from genre_spark.session import build_spark_session
from genre_spark.storage import TableStore, open_store

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "ranker_refits.md"


def trial_settings(conf: list[Path], warehouse: str, overrides: list[str]) -> Settings:
    return load_settings(conf, [f"storage.warehouse={warehouse}", *overrides])


def stored_cutoffs(store: TableStore, cutoffs: list[dt.date]) -> None:
    """Fail when a cut-off has no labelled features (its stages never ran in this warehouse)."""
    table = store.read_table(S.RANKER_FEATURES).filter(F.col(S.LABEL).isNotNull())
    found = {r[S.AS_OF] for r in table.select(S.AS_OF).distinct().collect()}  # a few dates
    missing = [str(c) for c in cutoffs if c not in found]
    if missing:
        raise ConfigError(
            f"table '{S.RANKER_FEATURES}': no labelled features for the cut-off(s) {missing}; "
            "run `genre-spark evaluate` (or `run`) with these discriminator settings first"
        )


def shallower(frame: pd.DataFrame, stored: CandidateSettings, trial: CandidateSettings) -> pd.DataFrame:
    """The pairs of ``frame`` (stored features) that the trial's candidate limits propose, with the
    sources' features of a pair proposed past its new limit as for a source that did not propose it."""
    deeper = sorted(s for s, n in trial.limits.items() if n > stored.limits.get(s, 0))
    if deeper:
        raise ConfigError(f"candidates.limits of {deeper}: deeper than the stored candidates' (rerun them)")
    if trial.limits == stored.limits:
        return frame
    within = {s: frame[f"{s}_rank"] <= trial.limits.get(s, 0) for s in S.CANDIDATE_SOURCES}
    kept = frame.assign(n_sources=sum(w.astype(float) for w in within.values()))
    for source, inside in within.items():
        kept[f"{source}_score"] = kept[f"{source}_score"].where(inside, 0.0)
        kept[f"{source}_rank"] = kept[f"{source}_rank"].where(inside, MISSING_RANK)
    return kept[kept["n_sources"] > 0]


def fit_scores(
    settings: Settings,
    stored: CandidateSettings,
    store: TableStore,
    as_of: dt.date,
    test: pd.DataFrame,
    seeds: list[int],
) -> list[np.ndarray]:
    """The trial's ranker fitted locally on its cut-offs before ``as_of``, once per booster seed (the
    training set is the configured seed's); each fit's scores of ``test``'s rows (already made as
    shallow as the trial's candidates)."""
    ranker = settings.discriminator
    columns = feature_columns(frozenset(ranker.without))
    cutoffs = training_cutoffs(as_of, ranker)
    stored_cutoffs(store, cutoffs)
    every = training_set(store, cutoffs, ranker).select(S.USER_ID, S.AS_OF, S.LABEL, *feature_columns())
    train = shallower(
        cast(
            pd.DataFrame,
            every.orderBy(S.AS_OF, S.USER_ID).toPandas(),  # each query's rows together, as xgboost wants
        ),  # the sample's cut-offs: ~1.9M rows x 50 doubles
        stored,
        settings.candidates,
    )
    queries = pd.factorize(train[S.AS_OF].astype(str) + "|" + train[S.USER_ID])[0]
    scores = []
    for seed in seeds:
        params = booster_params(ranker.model_copy(update={"seed": seed}))
        model = xgboost.XGBRanker(**params, missing=np.nan)
        model.fit(train[columns], train[S.LABEL], qid=queries)
        scores.append(model.predict(test[columns]))
        print(f"[{time.strftime('%H:%M:%S')}] seed {seed} fitted", flush=True)
    return scores


def scored_lists(spark_test: DataFrame, k: int) -> DataFrame:
    """(model, variant, user_id, items): the top k of every trial and seed in both variants."""
    new = F.col("ui_orders") == 0  # the new variant: pairs the user never bought before the date
    both = spark_test.withColumn(VARIANT, F.lit(VARIANT_ALL)).unionByName(
        spark_test.filter(new).withColumn(VARIANT, F.lit(VARIANT_NEW))
    )
    return top_k_lists(both.select(MODEL, VARIANT, S.USER_ID, S.ITEM_ID, "score"), k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True, help="a warehouse `evaluate` or `run` filled")
    parser.add_argument("--conf", type=Path, action="append", help="config files (default: conf/local.yaml)")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2011, 9, 1))
    parser.add_argument("--horizon-days", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="fits per trial (seeds: the config's + 0..n-1)")
    # every trial's training set comes to the driver (six cut-offs of the sample: ~1.2 GB from the tasks)
    parser.add_argument("--driver-memory", default="8g", help="spark.driver.memory over the --conf files'")
    parser.add_argument("--max-result-size", default="4g", help="spark.driver.maxResultSize, likewise")
    parser.add_argument(
        "--try",
        dest="trials",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME KEY=VALUE",
        help="a trial: its name, then config overrides (repeatable)",
    )
    args = parser.parse_args()
    conf = args.conf or [ROOT / "conf" / "local.yaml"]
    trials = {"default": [], **{t[0]: t[1:] for t in args.trials}}
    collect = [
        f"spark.conf.spark.driver.memory={args.driver_memory}",
        f"spark.conf.spark.driver.maxResultSize={args.max_result_size}",
    ]
    base = trial_settings(conf, args.warehouse, collect)
    spark = build_spark_session(base.spark, delta_extension=base.storage.backend == "delta")
    rows: list[tuple[str, str, float]] = []
    try:
        store = open_store(spark, base.storage)
        test_rows = store.read_table(S.RANKER_FEATURES).filter(F.col(S.AS_OF) == F.lit(args.as_of))
        test = cast(pd.DataFrame, test_rows.select(S.USER_ID, S.ITEM_ID, *feature_columns()).toPandas())
        if test.empty:
            raise ConfigError(f"table '{S.RANKER_FEATURES}': no features as of {args.as_of}")
        scored, seconds, depth = [], {}, {}
        for name, overrides in trials.items():
            settings = trial_settings(conf, args.warehouse, overrides)
            seeds = [settings.discriminator.seed + i for i in range(args.seeds)]
            print(f"trial {name}: {' '.join(overrides) or 'the config'}", flush=True)
            started = time.perf_counter()
            mine = shallower(test, base.candidates, settings.candidates)
            depth[name] = len(mine) / max(mine[S.USER_ID].nunique(), 1)
            fits = fit_scores(settings, base.candidates, store, args.as_of, mine, seeds)
            for seed, score in zip(seeds, fits, strict=True):
                keys = mine[[S.USER_ID, S.ITEM_ID, "ui_orders"]]
                scored.append(keys.assign(score=score, **{MODEL: f"{name}#{seed}"}))
            seconds[name] = (time.perf_counter() - started) / args.seeds
        events, items = store.read_table(S.EVENTS), store.read_table(S.ITEMS)
        truth = protocol_truth(events, items, args.as_of, args.as_of + dt.timedelta(days=args.horizon_days))
        lists = scored_lists(spark.createDataFrame(pd.concat(scored, ignore_index=True)), args.k)
        metrics = list_metrics(lists, truth.lists, [args.k]).filter(F.col("metric") == "ndcg")
        rows = [(r[MODEL], r[VARIANT], float(r["value"])) for r in metrics.collect()]  # trials x seeds x 2
    finally:
        spark.stop()
    report(args, trials, rows, seconds, depth)


def _spread(values: list[float]) -> str:
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def report(
    args: argparse.Namespace,
    trials: dict[str, list[str]],
    rows: list[tuple[str, str, float]],
    seconds: dict[str, float],
    depth: dict[str, float],
) -> None:
    """Append one table (a row per trial) to the results file, and print it."""
    table = [
        f"| trial | overrides | NDCG@{args.k} all, mean ± sd | new | per seed (all / new) | s per fit "
        "| candidates per user |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for name, overrides in trials.items():
        mine = sorted((model, variant, v) for model, variant, v in rows if model.split("#")[0] == name)
        every = [v for _, variant, v in mine if variant == VARIANT_ALL]
        new = [v for _, variant, v in mine if variant == VARIANT_NEW]
        seeds = ", ".join(f"{a:.4f} / {n:.4f}" for a, n in zip(every, new, strict=True))
        table.append(
            f"| {name} | {' '.join(overrides) or '(none)'} | {_spread(every)} | {_spread(new)} "
            f"| {seeds} | {seconds[name]:.0f} | {depth[name]:.0f} |"
        )
    tried = [f"--try {n} {' '.join(o)}" for n, o in trials.items() if n != "default"]
    command = " ".join(
        [
            "python benchmarks/ranker_refits.py",
            f"--warehouse {args.warehouse} --as-of {args.as_of} --seeds {args.seeds}",
            *tried,
        ]
    )
    title = f"## {dt.date.today()}: {len(trials)} trials x {args.seeds} seeds"
    text = "\n".join(["", title, "", f"`{command}` on {describe()}", "", *table])
    with RESULTS.open("a") as out:
        out.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
