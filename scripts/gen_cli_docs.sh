#!/usr/bin/env bash
# Regenerate docs/cli.md from the Typer app (a test checks it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m typer babyemo.cli utils docs --name babyemo --title "babyemo CLI reference" --output docs/cli.md
