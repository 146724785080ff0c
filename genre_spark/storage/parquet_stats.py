"""Delta ``add`` statistics (numRecords, minValues, maxValues, nullCount) from a Parquet footer.

Only what is exact is recorded: a reader may skip a file on these values, so a wrong min/max would
silently lose rows. Strings longer than 32 characters, decimals, binaries and nested columns get
no min/max (readers then treat them as unknown); timestamps are widened to whole milliseconds,
the precision Delta stats use.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pyarrow.parquet as pq

_MAX_STRING_STAT = 32


def delta_stats_json(metadata: pq.FileMetaData) -> str:
    """The JSON ``stats`` string of an AddAction for the Parquet file described by ``metadata``."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for col in range(metadata.num_columns):
        path = metadata.schema.column(col).path
        if "." in path:  # leaf of a list/map/struct: its null count is per element, not per row
            continue
        lo: Any = None
        hi: Any = None
        null_count = 0
        exact = True
        for rg in range(metadata.num_row_groups):
            st = metadata.row_group(rg).column(col).statistics
            if st is None or not st.has_null_count:
                exact = False
                break
            null_count += st.null_count
            if not st.has_min_max:
                continue
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
        if not exact:
            continue
        nulls[path] = null_count
        if lo is not None and hi is not None:
            pair = _json_bounds(lo, hi)
            if pair is not None:
                mins[path], maxs[path] = pair
    return json.dumps(
        {"numRecords": metadata.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        separators=(",", ":"),
    )


def _json_bounds(lo: Any, hi: Any) -> tuple[Any, Any] | None:
    if isinstance(lo, bool):
        return None
    if isinstance(lo, (int, float)):
        if isinstance(lo, float) and (math.isnan(lo) or math.isnan(hi)):
            return None
        return lo, hi
    if isinstance(lo, dt.datetime):
        return _ts(_floor_ms(lo)), _ts(_ceil_ms(hi))
    if isinstance(lo, dt.date):
        return lo.isoformat(), hi.isoformat()
    if isinstance(lo, str):
        if len(lo) > _MAX_STRING_STAT or len(hi) > _MAX_STRING_STAT:
            return None
        return lo, hi
    return None  # Decimal, bytes, ...: not recorded


def _floor_ms(t: dt.datetime) -> dt.datetime:
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)


def _ceil_ms(t: dt.datetime) -> dt.datetime:
    floor = _floor_ms(t)
    return floor if floor == t else floor + dt.timedelta(milliseconds=1)


def _ts(t: dt.datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
