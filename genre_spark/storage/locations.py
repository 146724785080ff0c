"""Where each table lives: a path or URI under the warehouse, or a catalog table name.

Pure resolution (no Spark, no I/O), from ``storage`` in config, once the back-end is known:

1. ``storage.tables[<table>]`` if given: a path/URI or a table name (``main.serving.recs``);
2. else ``<catalog>.<database>.<table>`` (or ``<database>.<table>``) when ``storage.database`` is set;
3. else ``<warehouse>/<table>``.

Paths may be local (made absolute) or URIs: ``s3://``, ``s3a://``, ``abfss://``, ``abfs://``, ``gs://``,
``hdfs://``, ``file://``, ``dbfs:/...``. Table names need the native Delta back-end (Spark's catalog);
the embedded back-end commits through delta-rs, which only knows paths, so it reads ``dbfs:/Volumes/...``
as the ``/Volumes/...`` mount Databricks provides and refuses other ``dbfs:/`` paths and table names.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from genre_spark.config import StorageSettings
from genre_spark.errors import ConfigError
from genre_spark.schemas import CONTRACTS

URI_SCHEMES = ("s3", "s3a", "abfss", "abfs", "gs", "hdfs", "file", "dbfs")
_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_TABLE_NAME = re.compile(rf"{_IDENT}(?:\.{_IDENT}){{1,2}}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(/.*)")


@dataclass(frozen=True)
class TableLocation:
    """Exactly one of ``path`` (a path or URI) and ``name`` (a catalog table name) is set."""

    table: str
    path: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        return self.name if self.name is not None else str(self.path)


def is_table_name(text: str) -> bool:
    """``catalog.schema.table`` or ``schema.table`` (identifiers, or back-quoted parts); never a path."""
    return _TABLE_NAME.fullmatch(text) is not None


def normalize_path(location: str, *, backend: str, key: str) -> str:
    """An absolute local path or a URI the back-end can use; ``key`` names the config key in errors."""
    location = location.strip()
    if not location:
        raise ConfigError(f"config key '{key}': empty location")
    match = _SCHEME.fullmatch(location)
    if match is None or len(match.group(1)) == 1:  # no scheme (a Windows drive letter is not one)
        return posixpath.normpath(posixpath.abspath(location)).rstrip("/") or "/"
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in URI_SCHEMES:
        raise ConfigError(
            f"config key '{key}': {location!r} has scheme '{scheme}'; valid choices: {list(URI_SCHEMES)}"
        )
    if scheme == "dbfs":
        if backend == "embedded":
            if rest.startswith("/Volumes/"):
                return rest.rstrip("/")  # the FUSE mount of Unity Catalog volumes
            raise ConfigError(
                f"config key '{key}': {location!r}: the embedded back-end reads only dbfs:/Volumes/... "
                "(as /Volumes/...); use storage.backend: delta on Databricks"
            )
        return "dbfs:" + rest.rstrip("/")
    if scheme == "file":
        return normalize_path(location.removeprefix("file://"), backend=backend, key=key)
    if not rest.startswith("//") or len(rest.strip("/")) == 0:
        raise ConfigError(f"config key '{key}': {location!r} is not a URI {scheme}://<bucket or host>/<path>")
    return location.rstrip("/")


@dataclass(frozen=True)
class Locator:
    """Resolves table names to locations for one back-end; build it with :func:`make_locator`."""

    warehouse: str
    backend: str
    namespace: str | None  # "catalog.database" or "database"
    overrides: Mapping[str, TableLocation]

    def locate(self, table: str) -> TableLocation:
        if table in self.overrides:
            return self.overrides[table]
        if self.namespace is not None:
            return TableLocation(table, name=f"{self.namespace}.{table}")
        return TableLocation(table, path=f"{self.warehouse}/{table}")


def make_locator(settings: StorageSettings, backend: str) -> Locator:
    """Check ``storage`` for ``backend`` (embedded or delta); a bad value raises ConfigError naming it."""
    warehouse = normalize_path(settings.warehouse, backend=backend, key="storage.warehouse")
    namespace = None
    if settings.catalog is not None and settings.database is None:
        raise ConfigError(
            f"config key 'storage.catalog': {settings.catalog!r} needs storage.database (the schema) too"
        )
    if settings.database is not None:
        parts = [p for p in (settings.catalog, settings.database) if p is not None]
        for key, part in zip(("storage.catalog", "storage.database")[-len(parts) :], parts, strict=True):
            if re.fullmatch(_IDENT, part) is None:
                raise ConfigError(f"config key '{key}': {part!r} is not an identifier (letters, digits, _)")
        namespace = ".".join(parts)
        _need_native(backend, "storage.database", namespace)
    overrides = {}
    for table, location in settings.tables.items():
        key = f"storage.tables.{table}"
        if table not in CONTRACTS:
            raise ConfigError(f"config key '{key}': unknown table; valid choices: {sorted(CONTRACTS)}")
        if is_table_name(location):
            _need_native(backend, key, location)
            overrides[table] = TableLocation(table, name=location)
        else:
            overrides[table] = TableLocation(table, path=normalize_path(location, backend=backend, key=key))
    return Locator(warehouse, backend, namespace, overrides)


def _need_native(backend: str, key: str, value: str) -> None:
    if backend != "delta":
        raise ConfigError(
            f"config key '{key}': catalog table {value!r} needs the native Delta back-end "
            "(storage.backend: delta, or auto on Databricks); the embedded back-end writes paths only"
        )
