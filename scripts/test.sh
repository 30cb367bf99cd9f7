#!/usr/bin/env bash
# Run the test suite: sets the environment up if needed (scripts/setup.sh), then pytest.
# This is the README's test command and what CI (.ci/run) calls. Extra args go to pytest:
#   bash scripts/test.sh -k parity -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# --xvfb-backend=xvfb: pytest-xvfb starts its own Xvfb and fails loudly if Xvfb is missing
# (its default is to carry on silently without a display). Any pytest failure, including
# exit code 5 (no tests collected), is this script's exit status.
exec .venv/bin/python -m pytest --xvfb-backend=xvfb "$@"
