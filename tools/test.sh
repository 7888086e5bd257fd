#!/usr/bin/env bash
# Sets up the environment (tools/install.sh), then runs the test suite.
# Extra arguments go to pytest, e.g. tools/test.sh -m "not slow" -x
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools/install.sh
. ./path.sh
# Style first (seconds): the formatter's layout and the linter's rules, configured in pyproject.toml.
ruff format --check --quiet . || { echo "tools/test.sh: run 'ruff format .' to fix the layout" >&2; exit 1; }
ruff check --quiet . || { echo "tools/test.sh: fix the lint above (ruff check --fix . fixes most)" >&2; exit 1; }
exec python -m pytest "$@"
