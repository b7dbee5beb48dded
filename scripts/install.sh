#!/usr/bin/env bash
# Create .venv and install babyemo into it.  Usage: bash scripts/install.sh [EXTRAS]
# e.g. `bash scripts/install.sh dev`. Where pip is capped to the torch/torchvision builds
# kept on local disk (the project's CI machines), those exact versions are installed
# first; elsewhere pip resolves the ranges in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
if [ -f /etc/xdg/pip/constraints.txt ] && grep -q 'torch<=2.14.1' /etc/xdg/pip/constraints.txt; then
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/pip install -q -e ".${1:+[$1]}"
.venv/bin/python -c "import babyemo, torch, torchvision; print('installed babyemo', babyemo.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
