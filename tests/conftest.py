"""One Spark session for the whole suite, built by the same code the entry points use."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import Settings, load_settings
from genre_spark.history import History
from genre_spark.ingest import IngestReport, run_ingest
from genre_spark.session import build_spark_session
from genre_spark.storage import TableStore
from genre_spark.storage.embedded import EmbeddedDeltaStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DATA = PROJECT_ROOT / "data" / "online_retail"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "online_retail"


def retail_file(name: str) -> Path:
    """A real export: the copy shipped with the project, else the shared one."""
    for folder in (SHIPPED_DATA, SHARED_DATA):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} is neither in {SHIPPED_DATA} nor in {SHARED_DATA}")


def in_contract(df: DataFrame, table: str) -> DataFrame:
    """``df`` with the columns of ``table``'s contract it lacks, as nulls: inline rows a store accepts."""
    return df.select(
        *[
            F.col(f.name).cast(f.dataType)
            if f.name in df.columns
            else F.lit(None).cast(f.dataType).alias(f.name)
            for f in S.CONTRACTS[table].fields
        ]
    )


def history_of(events: DataFrame, items: DataFrame, as_of: dt.date) -> History:
    """:meth:`History.of` for inline frames: items without ``first_seen_ts`` are known from the start."""
    if S.FIRST_SEEN_TS not in items.columns:
        items = items.withColumn(S.FIRST_SEEN_TS, F.lit(None).cast("timestamp"))
    return History.of(events, items, as_of)


# Small test data: compiling each plan's generated code costs more than running it (the evaluation tests
# 89-94 s with whole-stage codegen, 79-81 s without; the suite 1,530 s -> 1,369 s with this and smaller
# slices). Every Spark the suite starts takes it: this session, the CLI subprocesses and the cluster job.
NO_CODEGEN = "spark.conf.spark.sql.codegen.wholeStage=false"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(
        [PROJECT_ROOT / "conf" / "local.yaml"],
        [
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            "spark.conf.spark.driver.memory=2g",
            NO_CODEGEN,
            # the suite's budget (25 min): the similar-users source off on the full sample (checked on
            # inline data in tests/unit/test_candidates.py); with it, the ranker's integration fixture took
            # 336 s and the ranking of 2011-12-09 ran out of this 2g heap
            "candidates.limits.similar_users=0",
        ],
    )


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[SparkSession]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    session = build_spark_session(settings.spark)
    yield session
    session.stop()


REAL_RUN = "real-run"


@dataclass(frozen=True)
class RealWarehouse:
    store: TableStore
    ingest: IngestReport


def customer_slice(source: str, settings: Settings, target: Path, every_nth: int) -> Path:
    """All rows (valid or not) of every ``every_nth``-th customer (in id order) of the real export of
    ``source``, unchanged, as a CSV at ``target``; rows without a customer id are left out."""
    column = settings.ingest.sources[source].columns[S.USER_ID]
    path = retail_file(Path(settings.ingest.sources[source].path).name)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    customers = sorted(set(rows[column]) - {""})[::every_nth]
    rows[rows[column].isin(customers)].to_csv(target, index=False)
    return target


def ingest_real(
    spark: SparkSession,
    settings: Settings,
    folder: Path,
    only: str | None = None,
    path: Path | None = None,
) -> RealWarehouse:
    """The real exports (or ``only`` the one of that source name, read from ``path`` when given) ingested
    with run id REAL_RUN."""
    sources = {
        name: source.model_copy(
            update={
                "path": str(path or retail_file(Path(source.path).name)),
                "enabled": only in (None, name),
            }
        )
        for name, source in settings.ingest.sources.items()
    }
    store = EmbeddedDeltaStore(spark, str(folder / "warehouse"))
    report = run_ingest(spark, store, settings.ingest.model_copy(update={"sources": sources}), REAL_RUN)
    return RealWarehouse(store, report)


@pytest.fixture(scope="session")
def real(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> RealWarehouse:
    """Both real exports ingested into one warehouse: the ingest tests check their published figures."""
    return ingest_real(spark, settings, tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="session")
def real_2011(
    spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> RealWarehouse:
    """Every third customer of the 2010-2011 export (1,458 of its 4,372, a sixth of the events of both):
    the real data the pipeline and replay tests run on (the suite's 25-minute budget)."""
    folder, source = tmp_path_factory.mktemp("real_2011"), "online_retail_2010_2011"
    csv = customer_slice(source, settings, folder / "every_3rd_customer.csv", every_nth=3)
    return ingest_real(spark, settings, folder, source, csv)


@pytest.fixture()
def store(spark: SparkSession, tmp_path: Path) -> TableStore:
    """An empty embedded warehouse in a fresh temporary folder."""
    return EmbeddedDeltaStore(spark, str(tmp_path / "warehouse"))
