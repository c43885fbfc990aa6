"""The documentation's Python examples run as written, and print what their comments say they print.

Every ```python block of a document runs, in order, in one namespace, in a temporary working
folder. A comment line ``# text`` that directly follows a line with ``print(`` is the expected
output of that print (compared line by line with what the document printed).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import itertools
import re
from pathlib import Path

import pytest

import emgp_md

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "README.md",
    "docs/getting_started.md",
    "docs/calculator.md",
    "docs/fragmentation.md",
    "docs/your_data.md",
    "docs/learn.md",
]
SLOW = ["docs/landscapes.md"]  # a 41 x 41 grid and a relaxed dihedral scan of aspirin


def python_blocks(path: Path) -> list[str]:
    """The ```python code blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.DOTALL | re.MULTILINE)


def expected_prints(code: str) -> list[str]:
    """Comment lines (``# text`` at column 0) that directly follow a line calling ``print(``."""
    lines, expected = code.splitlines(), []
    for prev, line in itertools.pairwise(lines):
        if line.startswith("# ") and "print(" in prev:
            expected.append(line[2:].strip())
    return expected


def run_document(path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """Run a document's blocks; returns (printed lines, expected lines)."""
    blocks = python_blocks(path)
    assert blocks, f"{path} has no python example"
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__doc_example__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:
            exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 - our own documentation
    expected = [e for code in blocks for e in expected_prints(code)]
    return out.getvalue().splitlines(), expected


def _check(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed, expected = run_document(ROOT / doc, tmp_path, monkeypatch)
    assert printed, f"{doc}: the example printed nothing"
    stripped = [line.strip() for line in printed]
    for line in expected:
        assert line in stripped, f"{doc}: expected printed line {line!r}, got {stripped}"


@pytest.mark.parametrize("doc", FAST)
def test_document_examples_run(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(doc, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("doc", SLOW)
def test_slow_document_examples_run(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(doc, tmp_path, monkeypatch)


def test_expected_prints_parser() -> None:
    code = "x = 1\nprint(x)\n# 1\n# not output: no print above\ny = 2\n# a comment\n"
    assert expected_prints(code) == ["1"]


def test_public_names_are_the_functions() -> None:
    """``from emgp_md import relax`` is the function, whatever was imported before (a submodule of
    the same name would shadow it)."""
    importlib.import_module("emgp_md.md")  # load the drivers first, as a script would
    from emgp_md import EMGPCalculator, available_models, load_checkpoint, relax, run_md

    for obj in (available_models, load_checkpoint, relax, run_md):
        assert inspect.isfunction(obj), obj
    assert inspect.isclass(EMGPCalculator)
    assert set(emgp_md.__all__) >= {"EMGPCalculator", "available_models", "load_checkpoint", "relax", "run_md"}
