"""Screenshot a genre-spark run report (or any local HTML page) with headless Chromium.

python tools/screenshot_report.py warehouse/_reports/<run id>/report.html -o report.png

Needs Debian's chromium package (apt-get install chromium); exits 2 with the reason when it is missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, *, width: int = 1200, height: int = 2400, timeout: float = 120) -> Path:
    """Render ``page`` headless and write a PNG of ``width`` x ``height`` pixels to ``out``."""
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError(
            f"no Chromium found (looked for {', '.join(BROWSERS)}): apt-get install chromium"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: no state, no first-run dialogs
        command = [
            browser,
            "--headless",
            "--no-sandbox",  # root in containers
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report.html (or any local HTML file)")
    parser.add_argument(
        "-o", "--out", type=Path, default=None, help="PNG to write (default: beside the page)"
    )
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()
    if not args.page.is_file():
        print(f"screenshot_report: {args.page} does not exist", file=sys.stderr)
        return 2
    out = args.out or args.page.with_suffix(".png")
    try:
        screenshot(args.page, out, width=args.width, height=args.height)
    except FileNotFoundError as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
