"""Tables derived at ingest: the item catalog (when no catalog source is given) and the users table."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S

ENRICHMENT = (S.PRICE_BAND, S.CATEGORY_ID, S.CATEGORY_LABEL)
LISTED = "listed"  # a fresh item row from a catalog source (not derived from events)


def is_product(item_id: Column, codes: Sequence[str], patterns: Sequence[str]) -> Column:
    """False for postage, fees and manual adjustments (config lists), matched case-insensitively."""
    upper = F.upper(item_id)
    matches = upper.isin(*[c.upper() for c in codes]) if codes else F.lit(False)
    for pattern in patterns:
        matches = matches | item_id.rlike(f"(?i)^(?:{pattern})$")
    return ~matches


def items_from_events(rows: DataFrame) -> DataFrame:
    """One row per item id seen in event rows: its most frequent title, median positive price and
    first event time.

    ``rows`` are parsed event rows with a usable item id; rows quarantined for other reasons (a
    missing customer id, say) still tell us the item's title and price.
    """
    return rows.groupBy(S.ITEM_ID).agg(
        F.mode(S.TITLE, deterministic=True).alias(S.TITLE),
        F.lit(None).cast("string").alias(S.DESCRIPTION),
        F.median(F.when(F.col(S.UNIT_PRICE) > 0, F.col(S.UNIT_PRICE))).alias(S.UNIT_PRICE),
        F.min(S.EVENT_TS).alias(S.FIRST_SEEN_TS),
    )


def merge_items(
    fresh: DataFrame, existing: DataFrame | None, codes: Sequence[str], patterns: Sequence[str]
) -> DataFrame:
    """The new catalog: fresh rows and the existing items this run did not see.

    ``fresh`` has a boolean ``listed`` column: true for a catalog source's rows, false for items
    derived from this run's event rows. An item already known keeps its enrichment and the earlier first
    event; a catalog row sets its title, description and price, while event-derived values only fill
    what is unknown. A run that reads an export again sees its events as duplicates and derives the
    items from the rows quarantined for other reasons alone (a missing customer id, often without a
    title): they must not rename or reprice the catalog.
    """
    attributes = (S.TITLE, S.DESCRIPTION, S.UNIT_PRICE)
    base = fresh.select(S.ITEM_ID, *attributes, S.FIRST_SEEN_TS, LISTED)
    if existing is None:
        merged = base.drop(LISTED).select("*", *[F.lit(None).alias(c) for c in ENRICHMENT])
    else:
        known = existing.select(
            S.ITEM_ID,
            *ENRICHMENT,
            *[F.col(c).alias(f"_known_{c}") for c in (*attributes, S.FIRST_SEEN_TS)],
        )
        kept = existing.join(base.select(S.ITEM_ID), S.ITEM_ID, "left_anti").drop(S.IS_PRODUCT)
        chosen = [
            F.when(F.col(LISTED), F.col(c)).otherwise(F.coalesce(f"_known_{c}", c)).alias(c)
            for c in attributes
        ]
        first_seen = F.least(S.FIRST_SEEN_TS, f"_known_{S.FIRST_SEEN_TS}").alias(S.FIRST_SEEN_TS)
        merged = (
            base.join(known, S.ITEM_ID, "left")
            .select(S.ITEM_ID, *chosen, first_seen, *ENRICHMENT)
            .unionByName(kept)
        )
    return merged.select(
        S.ITEM_ID,
        S.TITLE,
        S.DESCRIPTION,
        S.UNIT_PRICE,
        F.col(S.PRICE_BAND).cast("string").alias(S.PRICE_BAND),
        F.col(S.CATEGORY_ID).cast("int").alias(S.CATEGORY_ID),
        F.col(S.CATEGORY_LABEL).cast("string").alias(S.CATEGORY_LABEL),
        is_product(F.col(S.ITEM_ID), codes, patterns).alias(S.IS_PRODUCT),
        S.FIRST_SEEN_TS,
    )


def users_from_events(events: DataFrame, profiles: DataFrame | None = None) -> DataFrame:
    """One row per user: most frequent country and first/last event time; a users source, when
    given, supplies the country and users who have no events yet."""
    derived = events.groupBy(S.USER_ID).agg(
        F.mode(S.COUNTRY, deterministic=True).alias("_event_country"),
        F.min(S.EVENT_TS).alias("first_event_ts"),
        F.max(S.EVENT_TS).alias("last_event_ts"),
    )
    if profiles is None:
        return derived.select(
            S.USER_ID, F.col("_event_country").alias(S.COUNTRY), "first_event_ts", "last_event_ts"
        )
    return derived.join(profiles.select(S.USER_ID, S.COUNTRY), S.USER_ID, "full_outer").select(
        S.USER_ID,
        F.coalesce(S.COUNTRY, "_event_country").alias(S.COUNTRY),
        "first_event_ts",
        "last_event_ts",
    )
