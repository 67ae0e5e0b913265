#!/usr/bin/env bash
# Install Debian's Chromium for the report's browser test (tests/report/test_browser.py) and for
# `python scripts/chromium.py`. The test is skipped, with this script named, when it is missing.
# Needs root (CI runs it as root; locally: sudo scripts/install_chromium.sh).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium fonts-dejavu-core
chromium --version || true
