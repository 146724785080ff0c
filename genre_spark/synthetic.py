"""Synthetic raw events at any scale, shaped like the real sample (``genre-spark generate``).

Two halves:

* :func:`fit_profile` measures the ingested sample (``events``, ``items``, ``quarantine``) and returns a
  :class:`SyntheticProfile`: distributions as quantiles and weights, small enough to ship as
  ``genre_spark/synthetic_profile.json`` (``genre-spark fit-profile`` rewrites it).
* :func:`generate_events` draws users, orders and order lines from the profile with Spark
  expressions only (``range`` + ``explode``; no shuffle, no driver-side loop over users or rows), and
  :func:`write_generated` writes them as gzipped CSV with the header of the Online Retail II export,
  plus a config that points ``ingest`` at them, so the whole pipeline (ingest included) runs on them.

Every random draw is a hash of the row's ids, the seed and a salt, so the same ``--users`` and
``--seed`` give the same rows whatever the partitioning.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from genre_spark import schemas as S

QUANTILE_LEVELS = 200  # mid-point quantiles per distribution: (i + 0.5) / QUANTILE_LEVELS
POPULARITY_LEVELS = 1000  # breakpoints of the item-popularity inverse CDF
CATEGORICAL_SLOTS = 1000  # resolution of a categorical draw (hour, weekday, country, title word)
TOP_WORDS = 150  # title words kept per position
TOP_COUNTRIES = 8
RETURN_DELAY_DAYS = 30  # a return follows its purchase by up to this many days
ROWS_PER_FILE = 1_000_000  # generated CSV rows per part file (about 40 MB before gzip)
PROFILE_FILE = "synthetic_profile.json"
ANONYMOUS_COUNTRY = "Unspecified"
NON_PRODUCT_CODE = "POST"
# The Online Retail II export's header; `generated_config` maps it onto the events contract.
COLUMNS = {
    S.ORDER_ID: "Invoice",
    S.ITEM_ID: "StockCode",
    S.TITLE: "Description",
    S.QUANTITY: "Quantity",
    S.EVENT_TS: "InvoiceDate",
    S.UNIT_PRICE: "Price",
    S.USER_ID: "Customer ID",
    S.COUNTRY: "Country",
}
_FIRST_USER_ID = 100_000  # synthetic customer ids are 6+ digits, like the 5-digit real ones


class SyntheticProfile(BaseModel):
    """The shape of the sample, fitted by :func:`fit_profile`. Quantile lists hold mid-point quantiles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fitted_on: str  # what the profile was measured on
    sample_users: int = Field(gt=0)  # customers with at least one product purchase
    sample_items: int = Field(gt=0)  # products bought at least once
    catalog_exponent: float = Field(gt=0, le=1)  # items(N) = sample_items * (N / sample_users) ** exponent
    span_start: dt.date
    span_end: dt.date
    orders_per_user: list[int]
    lines_per_order: list[int]
    quantity: list[int]
    item_price: list[float]
    # fractional popularity rank (0 = the most bought item) at which the cumulative share of purchase
    # lines reaches i / POPULARITY_LEVELS, i = 0..POPULARITY_LEVELS
    popularity_inverse_cdf: list[float]
    hour_weights: list[float] = Field(min_length=24, max_length=24)  # orders per hour of day 0..23
    weekday_weights: list[float] = Field(min_length=7, max_length=7)  # orders per weekday, Monday first
    # A line's item comes from the user's own pool with probability pool_draw, else from global
    # popularity; the pool has pool_ratio x (the user's expected lines) slots. Solved by pool_parameters()
    # from the sample's repeat share and re-bought items per line.
    pool_draw: float = Field(ge=0, le=1)
    pool_ratio: float = Field(gt=0)
    return_share: float = Field(ge=0, le=1)  # return lines per purchase line
    anonymous_share: float = Field(ge=0, lt=1)  # rows without a customer id (quarantined by ingest)
    non_product_share: float = Field(ge=0, lt=1)  # lines of postage/fees among a customer's lines
    countries: dict[str, float]  # customers per country (the top ones, the rest as 'Other')
    first_words: dict[str, float]  # product-title words by position, with their frequencies
    middle_words: dict[str, float]
    last_words: dict[str, float]
    # shape_statistics() of the sample: what generated data is tested against
    statistics: dict[str, float]

    def catalog_size(self, users: int) -> int:
        return max(50, round(self.sample_items * (users / self.sample_users) ** self.catalog_exponent))


def load_profile(path: str | Path | None = None) -> SyntheticProfile:
    """The packaged profile, or the one at ``path``."""
    if path is None:
        text = resources.files("genre_spark").joinpath(PROFILE_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return SyntheticProfile.model_validate_json(text)


def save_profile(profile: SyntheticProfile, path: str | Path) -> None:
    Path(path).write_text(profile.model_dump_json(indent=1) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------------


def _mid_levels(n: int) -> list[float]:
    return [(i + 0.5) / n for i in range(n)]


def _quantiles(df: DataFrame, column: str) -> list[float]:
    row = df.agg(F.percentile(column, _mid_levels(QUANTILE_LEVELS)).alias("q")).first()
    assert row is not None
    return [float(v) for v in row["q"]]


def popularity_inverse_cdf(counts: np.ndarray, levels: int = POPULARITY_LEVELS) -> list[float]:
    """Fractional rank (items sorted by count, descending) where the cumulative share reaches i/levels."""
    ordered = np.sort(np.asarray(counts, dtype=float))[::-1]
    cumulative = np.concatenate([[0.0], np.cumsum(ordered) / ordered.sum()])
    ranks = np.arange(len(ordered) + 1) / len(ordered)
    return [float(v) for v in np.interp(np.linspace(0.0, 1.0, levels + 1), cumulative, ranks)]


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, -> 1 = all on one item)."""
    values = np.sort(np.asarray(counts, dtype=float))
    n = len(values)
    cumulative = np.cumsum(values)
    return float((n + 1 - 2 * (cumulative / cumulative[-1]).sum()) / n)


def _weights(rows: list[tuple[object, int]]) -> dict[str, float]:
    total = sum(count for _, count in rows)
    return {str(key): count / total for key, count in rows}


def _word_weights(titles: DataFrame, position: Column) -> dict[str, float]:
    words = titles.select(position.alias("w")).where(F.length("w") >= 2)
    # bounded: TOP_WORDS rows
    top = words.groupBy("w").count().orderBy(F.desc("count"), "w").limit(TOP_WORDS).collect()
    return _weights([(r["w"], r["count"]) for r in top])


def item_purchase_counts(purchases: DataFrame) -> np.ndarray:
    """Purchase lines per item bought."""
    # bounded: one row per product bought (the catalog)
    return np.array([r["count"] for r in purchases.groupBy(S.ITEM_ID).count().collect()])


def shape_statistics(lines: DataFrame, counts: np.ndarray | None = None) -> dict[str, float]:
    """Summary numbers of product lines of known customers (``user_id``, ``order_id``, ``item_id``,
    ``event_type``, ``event_ts``): what a generated data set must reproduce (see the profile's
    ``statistics``)."""
    purchases = lines.where(F.col(S.EVENT_TYPE) == S.PURCHASE)
    first_time = F.min(S.EVENT_TS).over(Window.partitionBy(S.USER_ID, S.ITEM_ID))
    flagged = purchases.select(S.USER_ID, S.ITEM_ID, (F.col(S.EVENT_TS) > first_time).alias("repeat"))
    row = flagged.agg(
        F.count(F.lit(1)).alias("lines"),
        F.count_distinct(S.USER_ID).alias("users"),
        F.avg(F.col("repeat").cast("double")).alias("repeat_share"),
        F.count_distinct(F.when(F.col("repeat"), F.struct(S.USER_ID, S.ITEM_ID))).alias("pool"),
    ).first()
    orders = purchases.select(S.USER_ID, S.ORDER_ID).distinct().count()
    if counts is None:  # purchase lines per item, when the caller has not counted them already
        counts = item_purchase_counts(purchases)
    returns = lines.where(F.col(S.EVENT_TYPE) == S.RETURN).count()
    assert row is not None
    return {
        "users": float(row["users"]),
        "items": float(len(counts)),
        "item_gini": gini(counts),
        "mean_orders_per_user": orders / row["users"],
        "mean_lines_per_order": row["lines"] / orders,
        "repeat_share": float(row["repeat_share"]),
        "repeat_pool_ratio": row["pool"] / row["lines"],
        "return_share": returns / row["lines"],
    }


def pool_parameters(repeat_share: float, rebought_per_line: float) -> dict[str, float]:
    """Pool draw probability p and pool size ratio r reproducing the two repeat statistics.

    With x = p / r draws per slot (Poisson), the share of lines that re-buy a pool item is
    r (x - 1 + e^-x) and the pool items bought at least twice per line r (1 - e^-x - x e^-x).
    Their ratio fixes x (bisection: it grows monotonically with x), then r and p follow.
    """
    target = repeat_share / rebought_per_line

    def ratio(x: float) -> float:
        return (x - 1 + math.exp(-x)) / (1 - math.exp(-x) - x * math.exp(-x))

    lo, hi = 1e-6, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(mid) < target else (lo, mid)
    x = (lo + hi) / 2
    r = rebought_per_line / (1 - math.exp(-x) - x * math.exp(-x))
    return {"pool_draw": min(1.0, r * x), "pool_ratio": r}


def fit_profile(events: DataFrame, items: DataFrame, quarantine: DataFrame | None) -> SyntheticProfile:
    """Measure the ingested sample: ``events`` and ``items`` contracts, ``quarantine`` for ingest drops."""
    products = items.where(F.col(S.IS_PRODUCT)).select(S.ITEM_ID, S.TITLE, S.UNIT_PRICE)
    customer = events.where(F.col(S.USER_ID).isNotNull())
    lines = customer.join(products.select(S.ITEM_ID), S.ITEM_ID, "left_semi").cache()
    try:
        purchases = lines.where(F.col(S.EVENT_TYPE) == S.PURCHASE)
        counts = item_purchase_counts(purchases)
        stats = shape_statistics(lines, counts)
        orders = purchases.groupBy(S.USER_ID, S.ORDER_ID).agg(
            F.count(F.lit(1)).alias("n_lines"), F.min(S.EVENT_TS).alias("ts")
        )
        per_user = orders.groupBy(S.USER_ID).agg(F.count(F.lit(1)).alias("n_orders"))
        span = purchases.agg(F.min(S.EVENT_TS).alias("lo"), F.max(S.EVENT_TS).alias("hi")).first()
        hours = orders.groupBy(F.hour("ts").alias("k")).count().collect()  # bounded: 24 rows
        weekdays = orders.groupBy(F.weekday("ts").alias("k")).count().collect()  # bounded: 7 rows
        anonymous = 0
        if quarantine is not None:
            anonymous = quarantine.where(
                (F.col("table") == S.EVENTS) & (F.col("reason") == f"missing_{S.USER_ID}")
            ).count()
        user_country = customer.groupBy(S.USER_ID).agg(F.mode(S.COUNTRY, deterministic=True).alias("c"))
        top_countries = user_country.groupBy("c").count().orderBy(F.desc("count")).limit(TOP_COUNTRIES)
        countries = [(r["c"], r["count"]) for r in top_countries.collect()]  # bounded: TOP_COUNTRIES rows
        n_users = int(stats["users"])
        countries.append(("Other", max(1, n_users - sum(c for _, c in countries))))
        words = products.select(F.split(F.upper(F.trim(S.TITLE)), r"\s+").alias("w")).where(F.size("w") >= 2)
        assert span is not None
        return SyntheticProfile(
            fitted_on=f"{n_users} customers, {int(counts.sum())} product purchase lines",
            sample_users=n_users,
            sample_items=len(counts),
            catalog_exponent=_catalog_exponent(purchases, len(counts)),
            span_start=span["lo"].date(),
            span_end=span["hi"].date(),
            orders_per_user=[round(v) for v in _quantiles(per_user, "n_orders")],
            lines_per_order=[round(v) for v in _quantiles(orders, "n_lines")],
            quantity=[max(1, round(v)) for v in _quantiles(purchases, S.QUANTITY)],
            item_price=[
                round(v, 2) for v in _quantiles(products.where(F.col(S.UNIT_PRICE) > 0), S.UNIT_PRICE)
            ],
            popularity_inverse_cdf=popularity_inverse_cdf(counts),
            hour_weights=_dense(hours, 24),
            weekday_weights=_dense(weekdays, 7),
            **pool_parameters(stats["repeat_share"], stats["repeat_pool_ratio"]),
            return_share=stats["return_share"],
            anonymous_share=anonymous / (anonymous + events.count()),
            non_product_share=1 - lines.count() / customer.count(),
            countries=_weights(countries),
            first_words=_word_weights(words, F.element_at("w", 1)),
            middle_words=_word_weights(words.where(F.size("w") >= 3), F.element_at("w", 2)),
            last_words=_word_weights(words, F.element_at("w", -1)),
            statistics=stats,
        )
    finally:
        lines.unpersist()


def _dense(rows: list, size: int) -> list[float]:
    counts = np.zeros(size)
    for r in rows:
        counts[int(r["k"])] = r["count"]
    return [float(v) for v in counts / counts.sum()]


def _catalog_exponent(purchases: DataFrame, n_items: int) -> float:
    """Heaps-style exponent: distinct items bought by a hashed fraction f of the users ~ f ** exponent."""
    bucket = F.pmod(F.xxhash64(S.USER_ID), F.lit(64))
    fractions = (4, 8, 16, 32, 64)  # of 64 buckets
    seen = purchases.agg(
        *[F.count_distinct(F.when(bucket < n, F.col(S.ITEM_ID))).alias(str(n)) for n in fractions]
    ).first()
    assert seen is not None
    x = np.log([n / 64 for n in fractions])
    y = np.log([max(1, seen[str(n)]) for n in fractions])
    slope = float(np.polyfit(x, y, 1)[0])
    return min(1.0, max(0.05, slope)) if n_items > 1 else 1.0


# ----------------------------------------------------------------------------------------------------
# Generating
# ----------------------------------------------------------------------------------------------------


def _uniform(salt: str, *columns: Column | str, seed: int) -> Column:
    """A uniform draw in [0, 1) determined by the columns, the seed and the salt."""
    bits = F.pmod(F.xxhash64(*columns, F.lit(seed), F.lit(salt)), F.lit(1 << 53))
    return bits.cast("double") / float(1 << 53)


def _constant_array(values: Sequence[int | float | str]) -> Column:
    """An array literal as one SQL expression: ``F.lit(list)`` makes a JVM call per element (10 s for the
    profile's lookup tables), the SQL parser takes the whole array at once. Floats keep their exact value
    (shortest round-trip digits, 'D': a double literal)."""

    def literal(v: int | float | str) -> str:
        if isinstance(v, str):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        if isinstance(v, float) and math.isfinite(v):
            return f"{v!r}D"
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        raise TypeError(f"not an array literal element: {v!r}")

    return F.expr(f"array({', '.join(literal(v) for v in values)})")


def _from_quantiles(values: Sequence[int] | Sequence[float], u: Column) -> Column:
    """Inverse-CDF draw from mid-point quantiles (u uniform in [0, 1))."""
    return F.element_at(_constant_array(values), (u * len(values)).cast("int") + 1)


def _categorical(weights: list[float], u: Column) -> Column:
    """0-based index drawn with the given weights: a lookup table of CATEGORICAL_SLOTS slots (no
    per-row loop over the categories), exact to 1 / CATEGORICAL_SLOTS."""
    cumulative = np.cumsum(weights) / np.sum(weights)
    slots = np.searchsorted(cumulative, _mid_levels(CATEGORICAL_SLOTS), side="right")
    table = [int(v) for v in np.minimum(slots, len(weights) - 1)]
    return F.element_at(_constant_array(table), (u * CATEGORICAL_SLOTS).cast("int") + 1)


def _pick(words: dict[str, float], u: Column) -> Column:
    return F.element_at(_constant_array(list(words)), _categorical(list(words.values()), u) + 1)


def _popular_item(inverse_cdf: list[float], catalog: int, u: Column, v: Column) -> Column:
    """An item index (0 = most popular) with the sample's popularity curve over ``catalog`` items."""
    levels = len(inverse_cdf) - 1
    bucket = (u * levels).cast("int")
    table = _constant_array(inverse_cdf)
    lo = F.element_at(table, bucket + 1)
    hi = F.element_at(table, bucket + 2)
    rank = ((lo + v * (hi - lo)) * catalog).cast("long")
    return F.least(rank, F.lit(catalog - 1))


def _item_code(index: Column) -> Column:
    return F.concat(F.lit("S"), F.lpad(index.cast("string"), 7, "0"))


def generate_events(
    spark: SparkSession, profile: SyntheticProfile, users: int, seed: int, items: int | None = None
) -> DataFrame:
    """Raw export rows (columns :data:`COLUMNS`) for ``users`` customers, as a lazy Spark plan; ``items``:
    the catalog size (default: the sample's growth, :meth:`SyntheticProfile.catalog_size`), the
    popularity curve stretched over it."""
    p = profile
    catalog = p.catalog_size(users) if items is None else items
    if catalog < 1:
        raise ValueError(f"the catalog needs at least 1 item, got {catalog}")
    mean_lines = float(np.mean(p.lines_per_order))
    # guests: extra customers whose rows carry no customer id, anonymous_share of all rows
    guests = round(users * p.anonymous_share / (1 - p.anonymous_share))
    expected_rows = (users + guests) * float(np.mean(p.orders_per_user)) * mean_lines
    partitions = max(2, math.ceil(expected_rows / ROWS_PER_FILE))
    span_days = (p.span_end - p.span_start).days + 1

    uid = F.col("uid")
    people = spark.range(0, users + guests, numPartitions=partitions).select(F.col("id").alias("uid"))
    people = people.select(
        "uid",
        (uid >= users).alias("anonymous"),
        _from_quantiles(p.orders_per_user, _uniform("orders", uid, seed=seed)).alias("n_orders"),
        (_uniform("first", uid, seed=seed) * span_days).cast("int").alias("first_day"),
        _pick(p.countries, _uniform("country", uid, seed=seed)).alias("country"),
    )
    lines = _order_lines(_orders(people, p, seed), p, seed, catalog, mean_lines)
    rows = lines.drop("returned", "delay").unionByName(_returns(lines, p))
    return _export_columns(rows, p, seed)


def _orders(people: DataFrame, p: SyntheticProfile, seed: int) -> DataFrame:
    """One row per order line number: the customer's orders, each on a day and hour drawn from the profile."""
    uid = F.col("uid")
    orders = people.select(
        "uid",
        "anonymous",
        "n_orders",
        "first_day",
        "country",
        F.explode(F.sequence(F.lit(1), "n_orders")).alias("seq"),
    ).withColumn("oid", uid * 10_000 + F.col("seq"))
    oid = F.col("oid")
    remaining = (p.span_end - p.span_start).days + 1 - F.col("first_day")
    date = F.date_add(
        F.lit(p.span_start), F.col("first_day") + (_uniform("day", oid, seed=seed) * remaining).cast("int")
    )
    # move the order to a weekday drawn from the profile, within its week and the span
    weekday = _categorical(p.weekday_weights, _uniform("weekday", oid, seed=seed))
    date = F.date_add(date, weekday - F.weekday(date))
    date = F.when(date > F.lit(p.span_end), F.date_sub(date, 7)).otherwise(date)
    date = F.when(date < F.lit(p.span_start), F.date_add(date, 7)).otherwise(date)
    hour = _categorical(p.hour_weights, _uniform("hour", oid, seed=seed))
    minute = (_uniform("minute", oid, seed=seed) * 60).cast("int")
    ts = F.make_timestamp_ntz(F.year(date), F.month(date), F.dayofmonth(date), hour, minute, F.lit(0))
    return orders.select(
        "uid",
        "n_orders",
        "country",
        "oid",
        ts.alias("ts"),
        "anonymous",
        F.explode(
            F.sequence(F.lit(1), _from_quantiles(p.lines_per_order, _uniform("basket", oid, seed=seed)))
        ).alias("line"),
    )


def _order_lines(
    orders: DataFrame, p: SyntheticProfile, seed: int, catalog: int, mean_lines: float
) -> DataFrame:
    """Each line's item, quantity and whether it comes back. A repeat line draws its item from the user's
    pool (slot -> item by a hash of user and slot), so the same items recur across the user's orders; the
    pool grows with the user's expected lines."""
    uid, oid = F.col("uid"), F.col("oid")
    key = (oid, F.col("line"))
    pool = F.greatest(F.lit(1), (F.col("n_orders") * (mean_lines * p.pool_ratio)).cast("long"))
    slot = (_uniform("slot", *key, seed=seed) * pool).cast("long")
    repeat = _uniform("repeat", *key, seed=seed) < p.pool_draw
    u = F.when(repeat, _uniform("pool_u", uid, slot, seed=seed)).otherwise(
        _uniform("item_u", *key, seed=seed)
    )
    v = F.when(repeat, _uniform("pool_v", uid, slot, seed=seed)).otherwise(
        _uniform("item_v", *key, seed=seed)
    )
    return orders.select(
        "uid",
        "country",
        oid.cast("string").alias("invoice"),
        "ts",
        "anonymous",
        _popular_item(p.popularity_inverse_cdf, catalog, u, v).alias("item"),
        (_uniform("non_product", *key, seed=seed) < p.non_product_share).alias("non_product"),
        _from_quantiles(p.quantity, _uniform("quantity", *key, seed=seed)).alias("quantity"),
        (_uniform("return", *key, seed=seed) < p.return_share).alias("returned"),
        (_uniform("return_delay", *key, seed=seed) * (RETURN_DELAY_DAYS * 86_400))
        .cast("long")
        .alias("delay"),
    )


def _returns(lines: DataFrame, p: SyntheticProfile) -> DataFrame:
    """The returned product lines, as cancellation rows some days later (within the span)."""
    last_minute = F.lit(dt.datetime.combine(p.span_end, dt.time(23, 59)))
    returned_ts = F.timestamp_seconds(F.unix_timestamp(F.col("ts").cast("timestamp")) + F.col("delay"))
    return lines.where(F.col("returned") & ~F.col("non_product")).select(
        "uid",
        "country",
        F.concat(F.lit("C"), "invoice").alias("invoice"),
        F.least(returned_ts.cast("timestamp_ntz"), last_minute.cast("timestamp_ntz")).alias("ts"),
        "anonymous",
        "item",
        "non_product",
        (-F.col("quantity")).alias("quantity"),
    )


def _export_columns(rows: DataFrame, p: SyntheticProfile, seed: int) -> DataFrame:
    """Rows in the export's layout; an item's title and price are functions of its index."""
    item = F.col("item")
    title = F.concat_ws(
        " ",
        _pick(p.first_words, _uniform("w1", item, seed=seed)),
        _pick(p.middle_words, _uniform("w2", item, seed=seed)),
        _pick(p.last_words, _uniform("w3", item, seed=seed)),
    )
    price = _from_quantiles(p.item_price, _uniform("price", item, seed=seed))
    non_product, anonymous = F.col("non_product"), F.col("anonymous")
    c = COLUMNS
    return rows.select(
        F.col("invoice").alias(c[S.ORDER_ID]),
        F.when(non_product, F.lit(NON_PRODUCT_CODE)).otherwise(_item_code(item)).alias(c[S.ITEM_ID]),
        F.when(non_product, F.lit("POSTAGE")).otherwise(title).alias(c[S.TITLE]),
        F.col("quantity").alias(c[S.QUANTITY]),
        F.date_format("ts", "yyyy-MM-dd HH:mm:ss").alias(c[S.EVENT_TS]),
        F.when(non_product, F.lit(18.0)).otherwise(price).alias(c[S.UNIT_PRICE]),
        F.when(anonymous, F.lit(None))
        .otherwise((F.col("uid") + _FIRST_USER_ID).cast("string"))
        .alias(c[S.USER_ID]),
        F.when(anonymous, F.lit(ANONYMOUS_COUNTRY)).otherwise(F.col("country")).alias(c[S.COUNTRY]),
    )


def generated_config(events_path: str) -> dict[str, object]:
    """Config (merged over the defaults) that ingests the generated export instead of the sample."""
    return {
        "ingest": {
            "sources": {
                "online_retail_ii_2009_2010": {"enabled": False},
                "online_retail_2010_2011": {"enabled": False},
                "synthetic": {
                    "table": S.EVENTS,
                    "format": "csv",
                    "path": events_path,
                    "timestamp_format": "yyyy-MM-dd HH:mm:ss",
                    "columns": dict(COLUMNS),
                },
            }
        }
    }


def write_generated(df: DataFrame, out: str | Path) -> Path:
    """Write the rows as gzipped CSV part files under ``out/events/`` and the ingest config as
    ``out/genre-spark.yaml``; returns the config's path."""
    out = Path(out).resolve()
    events = out / "events"
    (
        df.write.mode("overwrite")
        .option("header", "true")
        .option("quote", '"')
        .option("escape", '"')
        .option("compression", "gzip")
        .csv(str(events))
    )
    config = out / "genre-spark.yaml"
    header = "# Written by `genre-spark generate`: ingests the synthetic export instead of the sample.\n"
    config.write_text(
        header + yaml.safe_dump(generated_config(str(events)), sort_keys=False), encoding="utf-8"
    )
    return config
