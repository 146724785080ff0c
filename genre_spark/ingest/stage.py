"""The ingest stage: raw sources -> ``events``, ``items``, ``users`` and ``quarantine``.

Every input row lands in exactly one of its target table or ``quarantine``; the stage checks
``count(in) == count(valid) + count(quarantined)`` per source against what the tables hold after
the commit, and fails the run on a mismatch.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import IngestSettings, SourceSettings
from genre_spark.errors import AccountingError, InputError
from genre_spark.ingest import derive, rules
from genre_spark.ingest.rules import DETAIL, ITEM_SPELLING, MALFORMED, RAW, REASON, ROW, SOURCE_COL
from genre_spark.ingest.sources import is_folder, list_files, read_source, spark_error_reason
from genre_spark.storage import AppendIfAbsent, TableStore, WriteResult

DUPLICATE_EVENT = "duplicate_event"
DUPLICATE_ITEM = "duplicate_item"
DUPLICATE_USER = "duplicate_user"
_PRIORITY = "_priority"


@dataclass(frozen=True)
class SourceCounts:
    source: str
    table: str
    rows_in: int
    valid: int
    quarantined: int
    reasons: dict[str, int]
    distinct_orders: int | None = None
    distinct_items: int | None = None
    merged_spellings: int | None = None  # raw item spellings folded into another (82001s into 82001S)

    @property
    def duplicates(self) -> int:
        return sum(n for reason, n in self.reasons.items() if reason.startswith("duplicate_"))


@dataclass(frozen=True)
class IngestReport:
    run_id: str
    sources: list[SourceCounts]
    writes: list[WriteResult] = field(default_factory=list)
    new_files: dict[str, int] = field(default_factory=dict)  # folder sources: files read this run

    def format(self) -> str:
        lines = [f"ingest run {self.run_id}"]
        for name, n in self.new_files.items():
            lines.append(f"  source {name}: {n} new file(s)" + ("" if n else ", nothing to ingest"))
        header = f"  {'source':<28} {'table':<7} {'rows in':>9} {'valid':>9} {'quarant.':>9} {'dupl.':>7}"
        lines += [header + f" {'orders':>8} {'items':>7} {'merged':>6}"]
        for s in self.sources:
            extra = f" {_n(s.distinct_orders):>8} {_n(s.distinct_items):>7} {_n(s.merged_spellings):>6}"
            lines.append(
                f"  {s.source:<28} {s.table:<7} {s.rows_in:>9,} {s.valid:>9,} {s.quarantined:>9,} "
                f"{s.duplicates:>7,}" + extra
            )
            for reason, n in sorted(s.reasons.items(), key=lambda kv: -kv[1]):
                lines.append(f"      quarantine {reason:<26} {n:>9,}")
        for w in self.writes:
            state = "unchanged (run already committed)" if w.skipped else f"{w.rows or 0:,} rows written"
            lines.append(f"  table {w.table:<11} version {w.version}: {state}")
        return "\n".join(lines)


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def run_ingest(spark: SparkSession, store: TableStore, settings: IngestSettings, run_id: str) -> IngestReport:
    sources = [(name, src) for name, src in settings.sources.items() if src.enabled]
    new_files = unread_files(spark, store, sources, run_id)
    sources = [(name, src) for name, src in sources if new_files.get(name, True)]
    counts = {name: len(files) for name, files in new_files.items()}
    if not any(src.table == S.EVENTS for _, src in sources):
        return IngestReport(run_id, [], [], counts)  # folder sources only, none with a new file
    priority = {name: i for i, (name, _) in enumerate(sources)}
    classified: dict[str, list[DataFrame]] = {S.EVENTS: [], S.ITEMS: [], S.USERS: []}
    cached: list[DataFrame] = []
    rows_in: dict[str, int] = {}
    try:
        # Each source is parsed once, in the pass that fills the events cache below: caching the parsed
        # sources too cost more than parsing (ingest at 100k users: benchmarks/results/profile_ingest.md).
        for name, src in sources:
            df = _classify_source(spark, name, src, settings, new_files.get(name))
            df = df.withColumn(_PRIORITY, F.lit(priority[name]))
            rows_in[name] = _read(df.count, [(name, src)])
            classified[src.table].append(df)

        # the events append commits only if no other run appended since this version (no double copies)
        read = AppendIfAbsent(S.EVENT_ID, store.version(S.EVENTS))
        events = _dedup_events(
            _union(classified[S.EVENTS]), _previous_events(store, run_id, read.read_version)
        )
        events = events.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(events)
        _read(events.count, [(n, s) for n, s in sources if s.table == S.EVENTS])  # fills the cache
        items, users = (
            _dedup(_union(classified[table]), key, reason) if classified[table] else None
            for table, key, reason in (
                (S.ITEMS, S.ITEM_ID, DUPLICATE_ITEM),
                (S.USERS, S.USER_ID, DUPLICATE_USER),
            )
        )
        cached += [df.persist(StorageLevel.MEMORY_AND_DISK) for df in (items, users) if df is not None]

        write = functools.partial(store.write_table, run_id=run_id, stage="ingest")
        writes = [
            write(_valid_events(events, run_id), S.EVENTS, mode="append", if_absent=read),
            write(
                _quarantine([(S.EVENTS, events), (S.ITEMS, items), (S.USERS, users)], run_id),
                S.QUARANTINE,
                mode="append",
            ),
            write(_items(store, events, items, settings), S.ITEMS, mode="overwrite"),
        ]
        profiles = None if users is None else users.filter(F.col(REASON).isNull())
        writes.append(
            write(derive.users_from_events(store.read_table(S.EVENTS), profiles), S.USERS, mode="overwrite")
        )
        accounted = _account(store, run_id, sources, rows_in, events, items, users)
        if any(new_files.values()):  # only once every row is accounted for: a failed run reads them again
            writes.append(write(ingested_files(spark, new_files, run_id), S.INGESTED_FILES, mode="append"))
        report = IngestReport(run_id, accounted, writes, counts)
    finally:
        for df in cached:
            df.unpersist()
    return report


# --------------------------------------------------------------------------- steps


def unread_files(
    spark: SparkSession, store: TableStore, sources: list[tuple[str, SourceSettings]], run_id: str
) -> dict[str, list[str]]:
    """Folder sources (CSV/Parquet): the files not read by an earlier run (``ingested_files``), per source
    name (ingest's sources, and the feedback stage's serving log)."""
    folders = [(n, s) for n, s in sources if s.format in ("csv", "parquet") and is_folder(s.path)]
    if not folders:
        return {}
    done: set[tuple[str, str]] = set()
    if store.exists(S.INGESTED_FILES):
        earlier = store.read_table(S.INGESTED_FILES).filter(F.col(S.RUN_ID) != run_id)
        # one row per input file: bounded by the number of files, not rows
        done = {(r[S.SOURCE], r["path"]) for r in earlier.select(S.SOURCE, "path").collect()}
    return {name: [f for f in list_files(spark, name, src) if (name, f) not in done] for name, src in folders}


def ingested_files(spark: SparkSession, new_files: dict[str, list[str]], run_id: str) -> DataFrame:
    """``ingested_files`` rows recording the files a run read (written once its rows are accounted for)."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [(name, path, run_id, now) for name, files in new_files.items() for path in files]
    return spark.createDataFrame(rows, S.contract(S.INGESTED_FILES))


def _classify_source(
    spark: SparkSession,
    name: str,
    src: SourceSettings,
    settings: IngestSettings,
    files: list[str] | None = None,
) -> DataFrame:
    raw = read_source(spark, name, src, files)
    n_columns = len(raw.columns) - 1
    fold = settings.fold_item_id_case
    if src.table == S.EVENTS:
        parsed = rules.parse_events(raw, src, name, settings.cancellation_prefix, fold)
        return rules.classify(parsed, rules.event_rules(src, n_columns))
    if src.table == S.ITEMS:
        parsed = rules.parse_items(raw, src, name, fold)
        return rules.classify(parsed, rules.item_rules(src, n_columns))
    return rules.classify(rules.parse_users(raw, src, name), rules.user_rules(src, n_columns))


def _read(action: Callable[[], int], sources: list[tuple[str, SourceSettings]]) -> int:
    """Runs a Spark action over ``sources``; a file that cannot be read fails it with the source named.

    Counting a source reads every byte of a CSV (a truncated gzip fails there) without parsing its
    columns; a value Parquet cannot decode fails the events' parse, which names the event sources.
    """
    try:
        return action()
    except (PySparkException, Py4JJavaError) as exc:
        if len(sources) == 1:
            ((name, src),) = sources
            reason = f"cannot be read as {src.format}: {spark_error_reason(exc)}"
            raise InputError(name, reason, path=src.path) from None
        names = " or ".join(name for name, _ in sources)  # the events of several sources, parsed together
        raise InputError(names, f"cannot be read: {spark_error_reason(exc)}") from None


def _union(frames: Iterable[DataFrame]) -> DataFrame:
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


def _previous_events(store: TableStore, run_id: str, version: int | None) -> DataFrame | None:
    """Event ids committed by earlier runs as of ``version`` (a rerun of this run must not see its
    own rows)."""
    if version is None:
        return None
    return (
        store.read_table(S.EVENTS, version=version)
        .filter(F.col(S.INGESTED_RUN_ID) != run_id)
        .select(S.EVENT_ID, F.col(S.INGESTED_RUN_ID).alias("_previous_run"))
    )


def _content_key() -> F.Column:
    parts = [
        F.col(S.ORDER_ID),
        F.col(S.ITEM_ID),
        F.col(S.EVENT_TYPE),
        F.col(S.QUANTITY).cast("string"),
        F.col(S.UNIT_PRICE).cast("string"),
        F.date_format(S.EVENT_TS, "yyyy-MM-dd HH:mm:ss.SSSSSS"),
        F.col(S.USER_ID),
    ]
    return F.sha2(F.concat_ws("\u001f", *[F.coalesce(p, F.lit("\u0000")) for p in parts]), 256)


def _dedup_events(events: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Deterministic event ids, then duplicates (across sources, or already ingested) quarantined.

    The id hashes the parsed content and its occurrence number among identical rows of the same
    source: two identical lines of one export stay two events, while the same line in two
    overlapping exports (or ingested again) is one event. Rows a rule already quarantined have no
    id and are nobody's duplicate: they skip the shuffle.
    """
    valid = F.col(REASON).isNull()
    # One shuffle for both windows: rows hashed by content key, which both window keys contain
    # (an event id is a function of the key and the occurrence number).
    rows = events.filter(valid).withColumn("_key", _content_key()).repartition("_key")
    occurrence = F.row_number().over(Window.partitionBy("_key", SOURCE_COL).orderBy(ROW))
    event_id = F.substring(
        F.sha2(F.concat_ws(":", F.col("_key"), F.col("_occurrence").cast("string")), 256), 1, 32
    )
    rows = rows.withColumn("_occurrence", occurrence).withColumn(S.EVENT_ID, event_id)
    by_id = Window.partitionBy("_key", "_occurrence").orderBy(_PRIORITY, ROW)
    rows = rows.withColumns(
        {"_rank": F.row_number().over(by_id), "_first_source": F.first(SOURCE_COL).over(by_id)}
    )
    duplicate_in_run = F.col("_rank") > 1
    detail = F.concat(
        F.lit("event_id="), F.col(S.EVENT_ID), F.lit(" also in source '"), F.col("_first_source"), F.lit("'")
    )
    if previous is not None:
        rows = rows.join(previous, S.EVENT_ID, "left")
        duplicate_before = ~duplicate_in_run & F.col("_previous_run").isNotNull()
        before_detail = F.concat(
            F.lit("event_id="), F.col(S.EVENT_ID), F.lit(" already ingested by run "), F.col("_previous_run")
        )
    else:
        duplicate_before = F.lit(False)
        before_detail = F.lit(None).cast("string")
    duplicate = duplicate_in_run | duplicate_before
    rows = rows.withColumns(
        {
            REASON: F.when(duplicate, F.lit(DUPLICATE_EVENT)),
            DETAIL: F.when(duplicate_in_run, detail).when(duplicate_before, before_detail),
            RAW: F.when(duplicate, F.col(RAW)),  # only quarantine keeps the raw line: not cached for events
        }
    )
    invalid = events.filter(~valid).withColumn(S.EVENT_ID, F.lit(None).cast("string"))
    return rows.select(*invalid.columns).unionByName(invalid)


def _dedup(df: DataFrame, key: str, reason: str) -> DataFrame:
    """Catalog/user sources: the first row per id (by source order, then file order) wins, later
    ones are quarantined."""
    valid = F.col(REASON).isNull()
    w = Window.partitionBy(F.when(valid, F.col(key)), F.when(~valid, F.col(RAW))).orderBy(_PRIORITY, ROW)
    dup = valid & (F.row_number().over(w) > 1)
    return df.withColumns(
        {
            REASON: F.when(dup, F.lit(reason)).otherwise(F.col(REASON)),
            DETAIL: F.when(dup, F.concat(F.lit(f"{key}="), F.col(key), F.lit(" repeated"))).otherwise(
                F.col(DETAIL)
            ),
        }
    )


def _valid_events(events: DataFrame, run_id: str) -> DataFrame:
    return events.filter(F.col(REASON).isNull()).select(
        S.EVENT_ID,
        S.USER_ID,
        S.ITEM_ID,
        S.EVENT_TYPE,
        F.abs(S.QUANTITY).alias(S.QUANTITY),  # direction is the event type
        S.UNIT_PRICE,
        S.EVENT_TS,
        S.ORDER_ID,
        S.COUNTRY,
        F.col(SOURCE_COL).alias(S.SOURCE),
        F.lit(run_id).alias(S.INGESTED_RUN_ID),
    )


def _quarantine(frames: list[tuple[str, DataFrame | None]], run_id: str) -> DataFrame:
    return _union(rules.quarantined(df, table, run_id) for table, df in frames if df is not None)


def _items(
    store: TableStore, events: DataFrame, catalog: DataFrame | None, settings: IngestSettings
) -> DataFrame:
    usable = events.filter(
        F.col(S.ITEM_ID).isNotNull() & ~F.col(MALFORMED) & (F.coalesce(REASON, F.lit("")) != DUPLICATE_EVENT)
    )
    fresh = derive.items_from_events(usable).withColumn(derive.LISTED, F.lit(False))
    if catalog is not None:
        listed = catalog.filter(F.col(REASON).isNull()).select(
            S.ITEM_ID, S.TITLE, S.DESCRIPTION, S.UNIT_PRICE, F.lit(True).alias(derive.LISTED)
        )
        seen = fresh.select(S.ITEM_ID, S.FIRST_SEEN_TS)  # a listed item without events stays null
        fresh = listed.join(seen, S.ITEM_ID, "left").unionByName(
            fresh.join(listed.select(S.ITEM_ID), S.ITEM_ID, "left_anti")
        )
    existing = store.read_table(S.ITEMS) if store.exists(S.ITEMS) else None
    return derive.merge_items(fresh, existing, settings.non_product_codes, settings.non_product_patterns)


def _account(
    store: TableStore,
    run_id: str,
    sources: list[tuple[str, SourceSettings]],
    rows_in: dict[str, int],
    events: DataFrame,
    items: DataFrame | None,
    users: DataFrame | None,
) -> list[SourceCounts]:
    """Counts per source, read back from the committed tables, checked against the input counts."""
    landed = _counts_by_source(store.read_table(S.EVENTS).filter(F.col(S.INGESTED_RUN_ID) == run_id))
    for df in (items, users):
        if df is not None:
            landed.update(
                _counts_by_source(df.filter(F.col(REASON).isNull()).withColumnRenamed(SOURCE_COL, S.SOURCE))
            )
    reasons: dict[str, dict[str, int]] = {}
    quarantined = store.read_table(S.QUARANTINE).filter(F.col(S.RUN_ID) == run_id)
    for row in quarantined.groupBy(S.SOURCE, "reason").count().collect():  # sources x rule ids: small
        reasons.setdefault(row[S.SOURCE], {})[row["reason"]] = row["count"]
    figures = {
        row[SOURCE_COL]: row
        for row in events.groupBy(SOURCE_COL)
        .agg(
            F.countDistinct(S.ORDER_ID).alias("orders"),
            F.countDistinct(S.ITEM_ID).alias("items"),
            F.countDistinct(F.when(F.col(S.ITEM_ID).isNotNull(), F.col(ITEM_SPELLING))).alias("spellings"),
        )
        .collect()  # one row per source
    }
    counts = []
    for name, src in sources:
        q = sum(reasons.get(name, {}).values())
        valid = landed.get(name, 0)
        if rows_in[name] != valid + q:
            raise AccountingError(
                f"source '{name}': {rows_in[name]:,} rows in, but {valid:,} landed in '{src.table}' and "
                f"{q:,} in 'quarantine' (run {run_id})"
            )
        fig = figures.get(name)
        counts.append(
            SourceCounts(
                name,
                src.table,
                rows_in[name],
                valid,
                q,
                reasons.get(name, {}),
                fig["orders"] if fig else None,
                fig["items"] if fig else None,
                fig["spellings"] - fig["items"] if fig else None,
            )
        )
    return counts


def _counts_by_source(df: DataFrame) -> dict[str, int]:
    # one row per source
    return {row[S.SOURCE]: row["count"] for row in df.groupBy(S.SOURCE).count().collect()}
