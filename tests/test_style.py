"""Style contract: ``ruff check`` and ``ruff format --check`` are clean over the repository.

Run by the README's test command (and so by ``.ci/run``); ruff is pinned in the ``test`` extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed: pip install -e '.[test]' installs the pinned version")
    return [found]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff_clean(args: list[str]) -> None:
    proc = subprocess.run([*_ruff(), *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, f"ruff {' '.join(args)} found problems:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
