"""Table name/path resolution (storage/locations.py): no Spark and no cloud access, resolution only."""

from __future__ import annotations

import os

import pytest

from genre_spark.config import StorageSettings, load_settings
from genre_spark.errors import ConfigError
from genre_spark.storage.locations import TableLocation, is_table_name, make_locator, normalize_path


def storage(**update: object) -> StorageSettings:
    return load_settings().storage.model_copy(update=update)


@pytest.mark.parametrize(
    ("warehouse", "backend", "events"),
    [
        ("s3://bucket/wh/", "delta", "s3://bucket/wh/events"),
        ("s3a://bucket/wh", "embedded", "s3a://bucket/wh/events"),
        (
            "abfss://lake@acct.dfs.core.windows.net/wh",
            "delta",
            "abfss://lake@acct.dfs.core.windows.net/wh/events",
        ),
        ("gs://bucket/wh", "embedded", "gs://bucket/wh/events"),
        ("hdfs://nn:8020/wh", "delta", "hdfs://nn:8020/wh/events"),
        ("dbfs:/Volumes/main/recs/wh", "delta", "dbfs:/Volumes/main/recs/wh/events"),
        ("dbfs:/Volumes/main/recs/wh", "embedded", "/Volumes/main/recs/wh/events"),  # the FUSE mount
        ("dbfs:/mnt/wh", "delta", "dbfs:/mnt/wh/events"),
        ("/data/wh/", "embedded", "/data/wh/events"),
        ("file:///data/wh", "embedded", "/data/wh/events"),
    ],
)
def test_warehouse_paths_and_uris(warehouse: str, backend: str, events: str) -> None:
    locator = make_locator(storage(warehouse=warehouse), backend)
    assert locator.locate("events") == TableLocation("events", path=events)


def test_relative_warehouse_is_made_absolute() -> None:
    locator = make_locator(storage(warehouse="warehouse"), "embedded")
    assert locator.locate("items").path == os.path.join(os.getcwd(), "warehouse", "items")


def test_catalog_tables_by_name_with_the_native_backend() -> None:
    locator = make_locator(
        storage(catalog="main", database="genre_spark", warehouse="/Volumes/x/y/wh"), "delta"
    )
    assert locator.locate("recommendations") == TableLocation(
        "recommendations", name="main.genre_spark.recommendations"
    )
    assert locator.warehouse == "/Volumes/x/y/wh"  # models and reports stay under the warehouse
    hive = make_locator(storage(database="recs"), "delta")
    assert hive.locate("events").name == "recs.events"


def test_per_table_overrides_win() -> None:
    locator = make_locator(
        storage(
            database="recs",
            tables={
                "recommendations": "serving.public.recs",
                "events": "abfss://raw@acct.dfs.core.windows.net/events",
            },
        ),
        "delta",
    )
    assert locator.locate("recommendations") == TableLocation("recommendations", name="serving.public.recs")
    assert locator.locate("events") == TableLocation(
        "events", path="abfss://raw@acct.dfs.core.windows.net/events"
    )
    assert locator.locate("items").name == "recs.items"
    embedded = make_locator(storage(warehouse="/wh", tables={"events": "/raw/events"}), "embedded")
    assert embedded.locate("events").path == "/raw/events" and embedded.locate("items").path == "/wh/items"


@pytest.mark.parametrize(
    ("update", "backend", "message"),
    [
        (
            {"catalog": "main", "database": "recs"},
            "embedded",
            "config key 'storage.database': catalog table 'main.recs'",
        ),
        ({"tables": {"events": "main.recs.events"}}, "embedded", "config key 'storage.tables.events'"),
        ({"catalog": "main"}, "delta", "config key 'storage.catalog': 'main' needs storage.database"),
        ({"database": "my-recs"}, "delta", "config key 'storage.database': 'my-recs' is not an identifier"),
        (
            {"tables": {"eventz": "/x"}},
            "delta",
            "config key 'storage.tables.eventz': unknown table; valid choices",
        ),
        ({"warehouse": "ftp://host/wh"}, "delta", "has scheme 'ftp'; valid choices"),
        ({"warehouse": "s3:/bucket"}, "delta", "is not a URI s3://<bucket or host>/<path>"),
        ({"warehouse": "dbfs:/mnt/wh"}, "embedded", "the embedded back-end reads only dbfs:/Volumes/"),
        ({"warehouse": " "}, "embedded", "config key 'storage.warehouse': empty location"),
    ],
)
def test_bad_locations_name_the_key(update: dict[str, object], backend: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_locator(storage(**update), backend)
    assert message in str(err.value)


def test_names_are_not_paths() -> None:
    assert (
        is_table_name("main.recs.events")
        and is_table_name("recs.events")
        and is_table_name("`my-cat`.recs.t")
    )
    for text in (
        "events",
        "/wh/recs.events",
        "s3://b/recs.events",
        "a.b.c.d",
        "recs.events.",
        "./recs.events",
    ):
        assert not is_table_name(text), text
    assert normalize_path("C:/data", backend="embedded", key="k").endswith("C:/data")  # no scheme: a path


def test_storage_keys_from_config_and_overrides() -> None:
    settings = load_settings(
        [], ["storage.catalog=main", "storage.database=recs", "storage.retention_days=30"]
    )
    assert (settings.storage.catalog, settings.storage.database, settings.storage.retention_days) == (
        "main",
        "recs",
        30,
    )
    with pytest.raises(ConfigError, match=r"storage\.retention_days"):
        load_settings([], ["storage.retention_days=0"])
