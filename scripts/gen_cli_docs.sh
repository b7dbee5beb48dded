#!/usr/bin/env bash
# Regenerate docs/cli.md from the Typer app (a test checks it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python scripts/gen_cli_docs.py
