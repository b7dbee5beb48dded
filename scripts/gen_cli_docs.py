"""Write docs/cli.md from the Typer app: `python scripts/gen_cli_docs.py [--check]`.

Typer's own generator (`python -m typer babyemo.cli utils docs`) writes the help texts as
they are; in Markdown a bare `<stem>` would be read as an HTML tag and vanish, so angle
brackets outside code spans are escaped here (and nothing else: apostrophes stay
apostrophes). `--check` exits 1 when docs/cli.md is not current (tests/cli/test_cli.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
_CODE_SPAN = re.compile(r"(`[^`]*`)")


def escape_angle_brackets(line: str) -> str:
    """``<`` / ``>`` outside backtick code spans become ``&lt;`` / ``&gt;``."""
    parts = _CODE_SPAN.split(line)
    return "".join(part if part.startswith("`") else
                   part.replace("<", "&lt;").replace(">", "&gt;") for part in parts)


def render() -> str:
    """The Markdown reference of the ``babyemo`` program."""
    proc = subprocess.run(
        [sys.executable, "-m", "typer", "babyemo.cli", "utils", "docs", "--name", "babyemo",
         "--title", "babyemo CLI reference"], capture_output=True, text=True, check=True)
    return "\n".join(escape_angle_brackets(line) for line in proc.stdout.strip().splitlines())


def main() -> int:
    text = render() + "\n"
    if "--check" in sys.argv[1:]:
        current = DOCS.read_text(encoding="utf-8") if DOCS.is_file() else ""
        if current != text:
            print(f"{DOCS} is not current: run scripts/gen_cli_docs.sh", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
