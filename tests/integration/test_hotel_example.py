"""examples/search.py runs against a real hoteld (the session's, 100000
hotels) and prints two pages and one hotel."""

from __future__ import annotations

import os
import subprocess
import sys

from hoteld_fixture import Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_search_example_runs(hoteld: Server) -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "search.py"), "--url", hoteld.tcp],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Page 1: 'hotel' within 5 km of the Eiffel Tower" in out
    assert "Page 2" in out and "Nearest: " in out and ", Paris, France" in out
    kms = [float(l.split()[0]) for l in out.splitlines() if l.strip().endswith(tuple("0123456789")) and " km " in l]
    assert len(kms) == 10 and kms == sorted(kms) and kms[-1] <= 5.0


def test_search_example_reports_errors(hoteld: Server) -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "search.py"), "--url", hoteld.tcp, "--radius-km", "-1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "INVALID_ARGUMENT: geo.radius_km" in proc.stderr
