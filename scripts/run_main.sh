#!/usr/bin/env bash
# The main job: set the environment up if needed (scripts/setup.sh), then run the demo,
# which segments a sample image and writes its results to demo_out/. Extra args go to
# the CLI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec .venv/bin/napari-seem demo --out demo_out "$@"
