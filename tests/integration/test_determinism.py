"""Two fresh runs of every stage on the same slice of the sample, in two fresh warehouses, write the same
rows: segments (silhouette sample, KMeans), ALS ids and every tie are fixed by a seed or a stated key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from genre_spark import schemas as S
from genre_spark.config import load_settings
from genre_spark.pipeline import STAGE_TABLE, STAGES, RunContext, run_stages
from genre_spark.storage.embedded import EmbeddedDeltaStore
from genre_spark.strategy import context_for, load_strategies
from tests.integration.test_notebooks import sample_slice, slice_conf

pytestmark = pytest.mark.slow
AS_OF = dt.date(2010, 12, 2)
COMPARED = (S.USER_SEGMENTS, S.CANDIDATES, S.RECOMMENDATIONS)


def test_two_fresh_runs_write_identical_lists(spark: SparkSession, tmp_path: Path) -> None:
    conf = slice_conf(tmp_path, sample_slice(tmp_path, rows=3_000))
    # the similar-users source on (on by default, off in the slice's config): its sums must repeat too. The
    # bi-encoder (off by default) is left off for the suite's budget: with both on the test took 138 s here,
    # 114 s with the bi-encoder alone, 100-121 s with the source alone; the scorers are checked against their
    # pure functions in tests/unit/test_scoring.py
    on = ["candidates.limits.similar_users=200"]
    tables = []
    for name in ("first", "second"):
        settings = load_settings([conf], [f"storage.warehouse={tmp_path / name}", *on])
        store = EmbeddedDeltaStore(spark, settings.storage.warehouse)
        strategies = load_strategies(settings.strategies_file)
        context = context_for(AS_OF, 9, settings.features.hour_bands)
        # one run id for both (the default one hashes the settings, the warehouse path among them)
        run_stages(RunContext(spark, store, settings, AS_OF, "fresh", strategies, context), list(STAGES))
        # the stage table says what each stage writes: it is true
        declared = {s.name: s.writes for s in STAGE_TABLE}
        assert all(result.table in declared[stage] for stage, result in store.write_log), store.write_log
        tables.append({t: store.read_table(t) for t in COMPARED})
    first, second = tables
    assert first[S.RECOMMENDATIONS].select(S.USER_ID).distinct().count() > 50
    assert first[S.CANDIDATES].filter("source = 'similar_users'").select(S.USER_ID).distinct().count() > 50
    for table in COMPARED:
        assert_df_equality(first[table], second[table], ignore_row_order=True)
