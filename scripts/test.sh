#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
# The report's browser test needs Debian's chromium: CI installs it (CI=true); elsewhere set
# ALLOOP_INSTALL_CHROMIUM=1 to have this script install it, or the test is skipped with a reason.
# The Label Studio tests need a real server in its own venv (.venv-labelstudio, about 1 GB, 2-5 min to
# install): CI installs it; elsewhere set ALLOOP_INSTALL_LABELSTUDIO=1, or those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if { [ "${CI:-}" = "true" ] || [ "${ALLOOP_INSTALL_CHROMIUM:-}" = "1" ]; } \
    && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    bash scripts/install_chromium.sh || echo "warning: chromium could not be installed; the browser test will be skipped" >&2
fi
if [ "${CI:-}" = "true" ] || [ "${ALLOOP_INSTALL_LABELSTUDIO:-}" = "1" ]; then
    bash scripts/labelstudio_server.sh install
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pytest -q "$@"
