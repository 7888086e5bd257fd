#!/usr/bin/env bash
# Sets up the environment (tools/install.sh), then runs the test suite.
# Extra arguments go to pytest, e.g. tools/test.sh -m "not slow" -x
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools/install.sh
. ./path.sh
exec python -m pytest "$@"
