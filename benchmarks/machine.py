"""Facts about the machine a benchmark ran on, for the headers of the results files."""

from __future__ import annotations

import os


def memory_gib() -> float:
    """Physical memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
