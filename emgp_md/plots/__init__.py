"""Every matplotlib figure of the package (and the RDKit fragment drawings).

Functions return ``matplotlib.figure.Figure`` objects and never call ``show()``. matplotlib is
imported lazily, only through :func:`pyplot`, which selects the non-interactive Agg backend: this
is the one place of the package that calls ``matplotlib.use``. Nothing outside ``plots/``,
``cli`` and ``reproduce/`` imports this package (``tests/test_layout.py`` checks it).

Modules: :mod:`~emgp_md.plots.md` (MD logs, learning curves, trajectory analysis, stability),
:mod:`~emgp_md.plots.landscape` (landscapes, scans, PC maps), :mod:`~emgp_md.plots.fragments`
(hypergraph fragments), :mod:`~emgp_md.plots.pretraining` (per-noise-level diagnostics),
:mod:`~emgp_md.plots.reports` (paper-reproduction figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) and close it, so that long runs and loops
    that make many figures do not keep them all in memory. Returns the path."""
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)
