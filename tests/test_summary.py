"""`alloop status` stays fast on a large pool: its module loads no network library (issue 14: status ≤ 1 s)."""

from __future__ import annotations

import subprocess
import sys


def test_status_imports_neither_torch_nor_the_loop():
    code = "import sys, alloop.summary; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn'}), " \
           "'alloop.loop' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False"], out
