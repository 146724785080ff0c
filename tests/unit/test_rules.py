"""One test per validation rule: a valid row and a row breaking exactly that rule, inline."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark.config import Settings, SourceSettings
from genre_spark.ingest import rules
from genre_spark.ingest.sources import CORRUPT

HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
RAW_SCHEMA = T.StructType([T.StructField(c, T.StringType()) for c in [*HEADER, CORRUPT]])
GOOD = {
    "InvoiceNo": "536365",
    "StockCode": "85123A",
    "Description": " WHITE HANGING HEART T-LIGHT HOLDER ",
    "Quantity": "6",
    "InvoiceDate": "2010-12-01 08:26:00",
    "UnitPrice": "2.55",
    "CustomerID": "17850.0",
    "Country": "United Kingdom",
    CORRUPT: None,
}
RESULT = T.StructType([T.StructField("reason", T.StringType()), T.StructField("detail", T.StringType())])


def raw_rows(spark: SparkSession, *changes: dict[str, str | None]) -> DataFrame:
    rows = [tuple({**GOOD, **change}[c] for c in RAW_SCHEMA.names) for change in changes]
    return spark.createDataFrame(rows, RAW_SCHEMA)


def classify(spark: SparkSession, source: SourceSettings, *changes: dict[str, str | None]) -> DataFrame:
    parsed = rules.parse_events(raw_rows(spark, *changes), source, "test", "C", True)
    return rules.classify(parsed, rules.event_rules(source, len(HEADER)))


@pytest.fixture(scope="module")
def source(settings: Settings) -> SourceSettings:
    return settings.ingest.sources["online_retail_2010_2011"]


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({CORRUPT: "536365,85123A,too short"}, "malformed_row", "line does not hold the header's 8 fields"),
        ({"InvoiceNo": None}, "missing_order_id", "InvoiceNo=<empty>"),
        ({"StockCode": "   "}, "missing_item_id", "StockCode=   "),
        ({"CustomerID": None}, "missing_user_id", "CustomerID=<empty>"),
        (
            {"InvoiceDate": "12/01/2010 08:26"},
            "bad_timestamp",
            "InvoiceDate=12/01/2010 08:26 (expected format yyyy-MM-dd HH:mm:ss)",
        ),
        (
            {"InvoiceDate": "2010-13-45 08:26:00"},
            "bad_timestamp",
            "InvoiceDate=2010-13-45 08:26:00 (expected format yyyy-MM-dd HH:mm:ss)",
        ),
        ({"Quantity": "six"}, "bad_quantity", "Quantity=six"),
        ({"Quantity": "99999999999"}, "bad_quantity", "Quantity=99999999999"),
        ({"Quantity": "0"}, "zero_quantity", "Quantity=0"),
        ({"UnitPrice": "2,55"}, "bad_price", "UnitPrice=2,55"),
        ({"UnitPrice": "NaN"}, "bad_price", "UnitPrice=NaN"),
        ({"UnitPrice": "-11062.06"}, "non_positive_price", "UnitPrice=-11062.06"),
        ({"UnitPrice": "0"}, "non_positive_price", "UnitPrice=0"),
        ({"Quantity": "-3"}, "quantity_sign_mismatch", "Quantity=-3 with InvoiceNo=536365"),
        (
            {"InvoiceNo": "C536379", "Quantity": "2"},
            "quantity_sign_mismatch",
            "Quantity=2 with InvoiceNo=C536379",
        ),
    ],
)
def test_rule(spark: SparkSession, source: SourceSettings, change: dict, reason: str, detail: str) -> None:
    result = classify(spark, source, {}, change).select(
        F.col(rules.REASON).alias("reason"), F.col(rules.DETAIL).alias("detail")
    )
    expected = spark.createDataFrame([(None, None), (reason, detail)], RESULT)
    assert_df_equality(result, expected, ignore_row_order=True)


def test_bad_event_type_when_the_source_names_event_types(
    spark: SparkSession, source: SourceSettings
) -> None:
    typed = source.model_copy(update={"columns": {**source.columns, "event_type": "Country"}})
    result = classify(spark, typed, {"Country": "Purchase"}, {"Country": "wishlist"}).select(
        F.col(rules.REASON).alias("reason"), F.col(rules.DETAIL).alias("detail")
    )
    expected = spark.createDataFrame([(None, None), ("bad_event_type", "Country=wishlist")], RESULT)
    assert_df_equality(result, expected, ignore_row_order=True)


def test_first_failing_rule_wins(spark: SparkSession, source: SourceSettings) -> None:
    # no customer, zero price and a bad date: reported once, as the first rule in order
    row = classify(spark, source, {"CustomerID": None, "UnitPrice": "0", "InvoiceDate": "x"}).first()
    assert row is not None and row[rules.REASON] == "missing_user_id"


def test_valid_rows_parse_into_contract_values(spark: SparkSession, source: SourceSettings) -> None:
    parsed = classify(
        spark,
        source,
        {},
        {"InvoiceNo": "C536379", "Quantity": "-1", "UnitPrice": "27.50", "CustomerID": "14527"},
    )
    result = parsed.select(
        "order_id",
        "item_id",
        "title",
        "user_id",
        "event_type",
        "quantity",
        "unit_price",
        "event_ts",
        rules.REASON,
    )
    ts = dt.datetime(2010, 12, 1, 8, 26)
    expected = spark.createDataFrame(
        [
            (
                "536365",
                "85123A",
                "WHITE HANGING HEART T-LIGHT HOLDER",
                "17850",
                "purchase",
                6,
                2.55,
                ts,
                None,
            ),
            (
                "C536379",
                "85123A",
                "WHITE HANGING HEART T-LIGHT HOLDER",
                "14527",
                "return",
                -1,
                27.5,
                ts,
                None,
            ),
        ],
        "order_id string, item_id string, title string, user_id string, event_type string, quantity int, "
        "unit_price double, event_ts timestamp, _reason string",
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_raw_row_is_kept_as_json(spark: SparkSession, source: SourceSettings) -> None:
    row = classify(spark, source, {"CustomerID": None}).first()
    assert row is not None
    assert '"StockCode":"85123A"' in row[rules.RAW] and '"InvoiceNo":"536365"' in row[rules.RAW]


def test_item_ids_differing_only_by_case_or_spaces_are_one_product(
    spark: SparkSession, source: SourceSettings
) -> None:
    parsed = classify(spark, source, {"StockCode": " 82001s "}, {"StockCode": "82001S"})
    assert {r.item_id for r in parsed.collect()} == {"82001S"}
