"""Every error the library raises on purpose. Messages say what was expected and what was found."""

from __future__ import annotations


class GenreSparkError(Exception):
    """Base class; the CLI turns it into a one-line message on stderr and a non-zero exit code."""

    exit_code = 1


class ConfigError(GenreSparkError):
    """A configuration file or override is invalid. Raised before Spark starts."""

    exit_code = 2


class InputError(GenreSparkError):
    """An input source is not what the config says it is (missing, empty, wrong header or type)."""

    exit_code = 3

    def __init__(self, source: str, message: str, *, path: str | None = None) -> None:
        self.source = source
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"source '{source}'{where}: {message}")


class SchemaMismatchError(GenreSparkError):
    """A DataFrame does not match the contract (or the existing schema) of the table it is written to."""

    exit_code = 4

    def __init__(self, table: str, problems: list[str]) -> None:
        self.table = table
        self.problems = problems
        super().__init__(f"table '{table}': schema mismatch: " + "; ".join(problems))


class TableNotFoundError(GenreSparkError):
    exit_code = 4

    def __init__(self, table: str, location: str) -> None:
        self.table = table
        super().__init__(f"table '{table}' does not exist at {location} (run the stage that writes it first)")


class RankerMissingError(GenreSparkError):
    """A strategy ranks with the learned ranker but no model scored the date's candidates."""

    exit_code = 4


class PartialInputError(GenreSparkError):
    """A stage's input partition was written for part of the users (a training cut-off's sample)."""

    exit_code = 4


class WriteConflictError(GenreSparkError):
    """Another writer committed to the same table in between; the write was not committed."""

    exit_code = 5


class AccountingError(GenreSparkError):
    """Rows went missing between input and output: count(in) != count(valid) + count(quarantined)."""

    exit_code = 6
