#!/usr/bin/env bash
# Set up (if needed) and run the demo loop on a generated orchard. Extra arguments go to `alloop demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
alloop demo "$@"
