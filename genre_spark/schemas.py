"""Table names, column names and the Spark schema of every table contract (DESIGN section 2).

Every field is nullable on purpose: delta-rs does not enforce NOT NULL at commit, so the library
checks the contract itself (``genre_spark.storage.contract``) and keeps the Delta schema permissive.
"""

from __future__ import annotations

from pyspark.sql import types as T

# Table names
EVENTS = "events"
ITEMS = "items"
USERS = "users"
QUARANTINE = "quarantine"

# Column names shared across tables
EVENT_ID = "event_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
ORDER_ID = "order_id"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
EVENT_TS = "event_ts"
COUNTRY = "country"
SOURCE = "source"
RUN_ID = "run_id"
INGESTED_RUN_ID = "ingested_run_id"
TITLE = "title"
DESCRIPTION = "description"
PRICE_BAND = "price_band"
CATEGORY_ID = "category_id"
CATEGORY_LABEL = "category_label"
IS_PRODUCT = "is_product"

# Event types
PURCHASE = "purchase"
RETURN = "return"
VIEW = "view"
CLICK = "click"
EVENT_TYPES = (PURCHASE, RETURN, VIEW, CLICK)


def _schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(name, dtype, nullable=True) for name, dtype in fields])


CONTRACTS: dict[str, T.StructType] = {
    EVENTS: _schema(
        (EVENT_ID, T.StringType()),
        (USER_ID, T.StringType()),
        (ITEM_ID, T.StringType()),
        (EVENT_TYPE, T.StringType()),
        (QUANTITY, T.IntegerType()),
        (UNIT_PRICE, T.DoubleType()),
        (EVENT_TS, T.TimestampType()),
        (ORDER_ID, T.StringType()),
        (COUNTRY, T.StringType()),
        (SOURCE, T.StringType()),
        (INGESTED_RUN_ID, T.StringType()),
    ),
    QUARANTINE: _schema(
        ("table", T.StringType()),
        (SOURCE, T.StringType()),
        ("raw", T.StringType()),
        ("reason", T.StringType()),
        ("detail", T.StringType()),
        (RUN_ID, T.StringType()),
    ),
    ITEMS: _schema(
        (ITEM_ID, T.StringType()),
        (TITLE, T.StringType()),
        (DESCRIPTION, T.StringType()),
        (UNIT_PRICE, T.DoubleType()),
        (PRICE_BAND, T.StringType()),
        (CATEGORY_ID, T.IntegerType()),
        (CATEGORY_LABEL, T.StringType()),
        (IS_PRODUCT, T.BooleanType()),
    ),
    USERS: _schema(
        (USER_ID, T.StringType()),
        (COUNTRY, T.StringType()),
        ("first_event_ts", T.TimestampType()),
        ("last_event_ts", T.TimestampType()),
    ),
}


def contract(table: str) -> T.StructType | None:
    """The contract schema of ``table``, or None for tables without one (scratch tables, tests)."""
    return CONTRACTS.get(table)
