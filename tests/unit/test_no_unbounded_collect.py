"""Static check: the library brings nothing per user or per item to the driver without saying why it is small.

Every ``.collect()`` / ``.toPandas()`` in ``genre_spark/`` must carry a comment on its statement (or the line
above) naming its bound ("one row per segment", "two rows", ...). A new unannotated collect fails here, which
forces the question "is this bounded by users or items?" at review time.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "genre_spark"
DRIVER_CALLS = {"collect", "toPandas"}


def driver_calls(path: Path) -> list[tuple[int, int]]:
    """(first line, last line) of each statement calling .collect() or .toPandas()."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or isinstance(
            node, ast.FunctionDef | ast.ClassDef | ast.If | ast.For
        ):
            continue
        calls = [
            n
            for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in DRIVER_CALLS
        ]
        if calls and not isinstance(node, ast.Try | ast.With):
            spans.append((node.lineno, node.end_lineno or node.lineno))
    return spans


def test_every_driver_collect_states_its_bound() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for first, last in driver_calls(path):
            window = lines[max(first - 2, 0) : last]
            if not any("#" in line for line in window):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{first}")
    assert not offenders, f"collect()/toPandas() without a comment naming its bound: {offenders}"


def test_the_check_finds_an_unannotated_collect(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(df):\n    rows = df.collect()\n    return rows\n")
    assert driver_calls(bad) == [(2, 2)]
