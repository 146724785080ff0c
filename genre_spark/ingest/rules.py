"""Parsing raw source rows into contract columns, and the validation rules with stable ids.

A row that fails a rule goes to ``quarantine`` with the id of the first rule it fails (rules are
checked in the order listed), a detail naming the source column and its value, and the raw row.
Everything here is Spark built-ins: one projection, no UDF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark import schemas as S
from genre_spark.config import FeedbackSourceSettings, SourceSettings
from genre_spark.ingest.sources import CORRUPT

# Bookkeeping columns of a classified row (besides the contract columns it parses into).
SOURCE_COL = "_source"
RAW = "_raw"
REASON = "_reason"
DETAIL = "_detail"
MALFORMED = "_malformed"
IS_CANCELLATION = "_is_cancellation"
ITEM_SPELLING = "_item_spelling"  # the item id as the source spelled it (trimmed), before case folding
ROW = "_row"  # increases with the position in the source (file order within each file)


def _in(column: str) -> str:
    """Name of the raw string view of a contract column (used in details)."""
    return f"_in_{column}"


@dataclass(frozen=True)
class Rule:
    id: str
    doc: str
    fails: Callable[[], Column]
    detail: Callable[[], Column]


def _value(source: SourceSettings, column: str, note: str = "") -> Callable[[], Column]:
    """Detail text: ``<source column>=<raw value>`` (``<empty>`` when absent), plus a note."""
    name = source.columns.get(column, column)
    return lambda: F.concat(F.lit(f"{name}="), F.coalesce(F.col(_in(column)), F.lit("<empty>")), F.lit(note))


def _malformed_rule(n_columns: int) -> Rule:
    return Rule(
        "malformed_row",
        "the line could not be split into the header's columns",
        lambda: F.col(MALFORMED),
        lambda: F.lit(f"line does not hold the header's {n_columns} fields"),
    )


def _missing(source: SourceSettings, column: str) -> Rule:
    return Rule(
        f"missing_{column}", f"{column} is empty", lambda: F.col(column).isNull(), _value(source, column)
    )


def _event_type_rule(source: SourceSettings, types: tuple[str, ...], note: str = "") -> Rule:
    return Rule(
        "bad_event_type",
        f"event type not one of {list(types)}",
        lambda: F.coalesce(~F.col(S.EVENT_TYPE).isin(*types), F.lit(True)),
        _value(source, S.EVENT_TYPE, note),
    )


def _timestamp_rule(source: SourceSettings) -> Rule:
    return Rule(
        "bad_timestamp",
        "event time missing or not in the configured format",
        lambda: F.col(S.EVENT_TS).isNull(),
        _value(source, S.EVENT_TS, f" (expected format {source.timestamp_format})"),
    )


def event_rules(source: SourceSettings, n_columns: int) -> tuple[Rule, ...]:
    q, p = F.col(S.QUANTITY), F.col(S.UNIT_PRICE)
    typed: tuple[Rule, ...] = ()
    if S.EVENT_TYPE in source.columns:  # otherwise derived from the order id, always valid
        typed = (_event_type_rule(source, S.EVENT_TYPES),)
    return (
        _malformed_rule(n_columns),
        _missing(source, S.ORDER_ID),
        _missing(source, S.ITEM_ID),
        _missing(source, S.USER_ID),
        _timestamp_rule(source),
        Rule(
            "bad_quantity",
            "quantity missing or not an integer",
            lambda: q.isNull(),
            _value(source, S.QUANTITY),
        ),
        Rule("zero_quantity", "quantity is 0", lambda: q == 0, _value(source, S.QUANTITY)),
        Rule(
            "bad_price",
            "unit price missing or not a finite number",
            lambda: p.isNull() | F.isnan(p) | (F.abs(p) == float("inf")),
            _value(source, S.UNIT_PRICE),
        ),
        Rule("non_positive_price", "unit price <= 0", lambda: p <= 0, _value(source, S.UNIT_PRICE)),
        *typed,
        Rule(
            "quantity_sign_mismatch",
            "negative quantity outside a cancellation/return, or a cancellation with a positive quantity",
            lambda: ((q < 0) & (F.col(S.EVENT_TYPE) != S.RETURN)) | (F.col(IS_CANCELLATION) & (q > 0)),
            lambda: F.concat(
                F.lit(f"{source.columns[S.QUANTITY]}="),
                F.col(_in(S.QUANTITY)),
                F.lit(f" with {source.columns[S.ORDER_ID]}="),
                F.col(_in(S.ORDER_ID)),
            ),
        ),
    )


def item_rules(source: SourceSettings, n_columns: int) -> tuple[Rule, ...]:
    rules = [_malformed_rule(n_columns), _missing(source, S.ITEM_ID)]
    if S.UNIT_PRICE in source.columns:
        p = F.col(S.UNIT_PRICE)
        rules.append(
            Rule(
                "bad_price",
                "unit price given but not a positive finite number",
                lambda: (
                    F.col(_in(S.UNIT_PRICE)).isNotNull()
                    & (p.isNull() | F.isnan(p) | (p <= 0) | (p == float("inf")))
                ),
                _value(source, S.UNIT_PRICE),
            )
        )
    return tuple(rules)


def user_rules(source: SourceSettings, n_columns: int) -> tuple[Rule, ...]:
    return (_malformed_rule(n_columns), _missing(source, S.USER_ID))


def feedback_rules(source: FeedbackSourceSettings, n_columns: int) -> tuple[Rule, ...]:
    """Serving-log rows: the list they are about is checked later, against the lists served."""
    named = [c for c in (S.RUN_ID, S.AS_OF) if c in source.columns]
    return (
        _malformed_rule(n_columns),
        _missing(source, S.USER_ID),
        _missing(source, S.ITEM_ID),
        _event_type_rule(
            source, S.FEEDBACK_EVENT_TYPES, f" (expected one of {', '.join(S.FEEDBACK_EVENT_TYPES)})"
        ),
        _timestamp_rule(source),
        Rule(
            "missing_list",
            "neither a run id nor an as-of date (in the configured format) names the served list",
            lambda: F.col(S.RUN_ID).isNull() & F.col(S.AS_OF).isNull(),
            lambda: F.concat_ws(" ", *[_value(source, c)() for c in named]),
        ),
    )


def classify(parsed: DataFrame, rules: tuple[Rule, ...]) -> DataFrame:
    """Adds ``_reason``/``_detail``: the first rule the row fails, null when the row is valid.

    The raw string views (``_in_*``) are dropped once the details are built: they would only
    widen every row that later stages shuffle.
    """
    classified = parsed.withColumns(
        {
            REASON: F.coalesce(*[F.when(r.fails(), F.lit(r.id)) for r in rules]),
            DETAIL: F.coalesce(*[F.when(r.fails(), r.detail()) for r in rules]),
        }
    )
    return classified.drop(*[c for c in classified.columns if c.startswith("_in_")])


# --------------------------------------------------------------------------- parsing


def _raw_json(raw: DataFrame) -> Column:
    original = [F.col(f"`{c}`") for c in raw.columns if c != CORRUPT]
    return F.when(F.col(CORRUPT).isNotNull(), F.col(CORRUPT)).otherwise(F.to_json(F.struct(*original)))


def _text(column: Column) -> Column:
    trimmed = F.trim(column.cast("string"))
    return F.when(trimmed != "", trimmed)


def _item_id(column: Column, fold_case: bool) -> Column:
    # Codes that differ only by surrounding spaces, or by case when folded (82001S / 82001s), are one item.
    return F.upper(_text(column)) if fold_case else _text(column)


def _item_columns(source: SourceSettings, fold_case: bool) -> list[Column]:
    """The item id and its raw spelling (trimmed), which ingest counts to report merged spellings."""
    column = F.col(f"`{source.columns[S.ITEM_ID]}`")
    return [_item_id(column, fold_case).alias(S.ITEM_ID), _text(column).alias(ITEM_SPELLING)]


def _user_id(column: Column) -> Column:
    # Exports written through spreadsheets turn 17850 into "17850.0"; both are the same customer.
    return _text(F.regexp_replace(F.trim(column.cast("string")), r"^(\d+)\.0+$", "$1"))


def _integer(column: Column, dtype: T.DataType) -> Column:
    if isinstance(dtype, T.IntegralType):
        return column.cast("int")
    if isinstance(dtype, T.StringType):
        return F.trim(column).try_cast("int")
    # fractional types: integral values only
    return F.when(column == F.floor(column), column.try_cast("int"))


def _double(column: Column, dtype: T.DataType) -> Column:
    return (F.trim(column) if isinstance(dtype, T.StringType) else column).try_cast("double")


def _timestamp(column: Column, dtype: T.DataType, fmt: str) -> Column:
    if isinstance(dtype, T.StringType):
        return F.try_to_timestamp(F.trim(column), F.lit(fmt))
    return column.cast("timestamp")


def _prelude(raw: DataFrame, source: SourceSettings, name: str) -> list[Column]:
    """Source name, raw JSON, malformed flag and the raw string view of every mapped column."""
    return [
        F.lit(name).alias(SOURCE_COL),
        F.monotonically_increasing_id().alias(ROW),
        _raw_json(raw).alias(RAW),
        F.col(CORRUPT).isNotNull().alias(MALFORMED),
        *[F.col(f"`{src}`").cast("string").alias(_in(dst)) for dst, src in source.columns.items()],
    ]


def _source_column(raw: DataFrame, source: SourceSettings, column: str) -> tuple[Column, T.DataType]:
    src = source.columns[column]
    return F.col(f"`{src}`"), raw.schema[src].dataType


def parse_events(
    raw: DataFrame, source: SourceSettings, name: str, cancellation_prefix: str, fold_case: bool
) -> DataFrame:
    cols = source.columns
    qty, qty_type = _source_column(raw, source, S.QUANTITY)
    price, price_type = _source_column(raw, source, S.UNIT_PRICE)
    ts, ts_type = _source_column(raw, source, S.EVENT_TS)
    order_id = _text(F.col(f"`{cols[S.ORDER_ID]}`"))
    is_cancel = F.coalesce(order_id.startswith(cancellation_prefix), F.lit(False))
    optional = {
        c: _text(F.col(f"`{cols[c]}`")) if c in cols else F.lit(None).cast("string")
        for c in (S.TITLE, S.COUNTRY)
    }
    if S.EVENT_TYPE in cols:
        event_type = F.lower(_text(F.col(f"`{cols[S.EVENT_TYPE]}`")))
    else:
        event_type = F.when(is_cancel, F.lit(S.RETURN)).otherwise(F.lit(S.PURCHASE))
    return raw.select(
        *_prelude(raw, source, name),
        order_id.alias(S.ORDER_ID),
        *_item_columns(source, fold_case),
        _user_id(F.col(f"`{cols[S.USER_ID]}`")).alias(S.USER_ID),
        _timestamp(ts, ts_type, source.timestamp_format).alias(S.EVENT_TS),
        _integer(qty, qty_type).alias(S.QUANTITY),
        _double(price, price_type).alias(S.UNIT_PRICE),
        event_type.alias(S.EVENT_TYPE),
        is_cancel.alias(IS_CANCELLATION),
        optional[S.TITLE].alias(S.TITLE),
        optional[S.COUNTRY].alias(S.COUNTRY),
    )


def parse_items(raw: DataFrame, source: SourceSettings, name: str, fold_case: bool) -> DataFrame:
    cols = source.columns

    def text(column: str) -> Column:
        return _text(F.col(f"`{cols[column]}`")) if column in cols else F.lit(None).cast("string")

    if S.UNIT_PRICE in cols:
        price = _double(*_source_column(raw, source, S.UNIT_PRICE))
    else:
        price = F.lit(None).cast("double")
    return raw.select(
        *_prelude(raw, source, name),
        *_item_columns(source, fold_case),
        text(S.TITLE).alias(S.TITLE),
        text(S.DESCRIPTION).alias(S.DESCRIPTION),
        price.alias(S.UNIT_PRICE),
        text(S.CATEGORY_LABEL).alias(S.CATEGORY_LABEL),
    )


def parse_feedback(raw: DataFrame, source: FeedbackSourceSettings, name: str, fold_case: bool) -> DataFrame:
    """A serving log's rows as ``feedback_events`` columns plus ``as_of`` (the served list's date, when the
    log names lists by date rather than run id)."""
    cols = source.columns

    def text(column: str) -> Column:
        return _text(F.col(f"`{cols[column]}`")) if column in cols else F.lit(None).cast("string")

    ts, ts_type = _source_column(raw, source, S.EVENT_TS)
    if S.AS_OF in cols:
        day, day_type = _source_column(raw, source, S.AS_OF)
        as_of = _timestamp(day, day_type, source.as_of_format).cast("date")
    else:
        as_of = F.lit(None).cast("date")
    return raw.select(
        *_prelude(raw, source, name),
        text(S.RUN_ID).alias(S.RUN_ID),
        _user_id(F.col(f"`{cols[S.USER_ID]}`")).alias(S.USER_ID),
        _item_id(F.col(f"`{cols[S.ITEM_ID]}`"), fold_case).alias(S.ITEM_ID),
        F.lower(text(S.EVENT_TYPE)).alias(S.EVENT_TYPE),
        _timestamp(ts, ts_type, source.timestamp_format).alias(S.EVENT_TS),
        as_of.alias(S.AS_OF),
    )


def quarantined(classified: DataFrame, table: str, run_id: str) -> DataFrame:
    """The ``quarantine`` rows of a classified source: the rows with a reason."""
    return classified.filter(F.col(REASON).isNotNull()).select(
        F.lit(table).alias("table"),
        F.col(SOURCE_COL).alias(S.SOURCE),
        F.col(RAW).alias("raw"),
        F.col(REASON).alias("reason"),
        F.col(DETAIL).alias("detail"),
        F.lit(run_id).alias(S.RUN_ID),
    )


def parse_users(raw: DataFrame, source: SourceSettings, name: str) -> DataFrame:
    cols = source.columns
    country = _text(F.col(f"`{cols[S.COUNTRY]}`")) if S.COUNTRY in cols else F.lit(None).cast("string")
    return raw.select(
        *_prelude(raw, source, name),
        _user_id(F.col(f"`{cols[S.USER_ID]}`")).alias(S.USER_ID),
        country.alias(S.COUNTRY),
    )
