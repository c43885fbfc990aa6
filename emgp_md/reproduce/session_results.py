"""What an accelerator session hands back: a compact text summary of its run folders and the packed
results (``results.tar.gz`` of every small file, one archive per long run's ``model.pt``), each file
under the device's per-file limit (:data:`MAX_ARCHIVE`). Used by ``workflows/gpu_session.py``.
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)
MAX_ARCHIVE = 15 * 2**20


def summary_text(out: Path, elapsed_s: float) -> str:
    """Compact per-run summary of a session folder (also ``summary.txt``)."""
    lines = [f"session {out} after {elapsed_s:.0f} s"]
    grid: dict[tuple[str, int, str], list[float]] = {}
    n_cut = 0
    for m in sorted(out.glob("**/metrics.json")):
        r = json.loads(m.read_text())
        rel = m.parent.relative_to(out).as_posix()
        t = r.get("test", {})
        if rel.startswith("grid/"):
            _, mol, n, init, _ = rel.split("/")
            n_cut += not r.get("finished")
            if r.get("finished") and t:
                grid.setdefault((mol, int(n[1:]), init), []).append(t["force_mae_kcal_mol_A"])
            continue
        lines.append(
            f"{rel}: {'finished' if r.get('finished') else 'CUT'} {r.get('steps')} steps "
            f"({r.get('epochs', 0):.1f} epochs, {r.get('train_wall_s', 0):.0f} s); val F "
            f"{(r.get('val') or {}).get('force_mae_kcal_mol_A', float('nan')):.4f}; test_01 E "
            f"{t.get('energy_mae_kcal_mol', float('nan')):.4f} kcal/mol, F {t.get('force_mae_kcal_mol_A', float('nan')):.4f} "
            f"kcal/mol/Å ({t.get('force_mae_meV_A', float('nan')):.1f} meV/Å)"
        )
    if grid:
        lines.append(f"grid: test_01 force MAE kcal/mol/Å, mean over finished seeds (n); {n_cut} runs cut")
        for (mol, n, init), vals in sorted(grid.items()):
            lines.append(f"  {mol:14s} N={n:4d} {init:10s} {sum(vals) / len(vals):.4f} (n={len(vals)})")
    return "\n".join(lines)


def write_summary(out: Path, out_dir: Path | None, text: str) -> None:
    """``summary.txt`` in the session folder ``out`` and, when given, in ``out_dir``."""
    (out / "summary.txt").write_text(text + "\n")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.txt").write_text(text + "\n")


def pack_results(out: Path, out_dir: Path) -> list[Path]:
    """``results.tar.gz`` (every small file of the session; no ``.pt``) and one ``models_<run>.tar.gz``
    per paper-regime / paper-recipe run (its ``model.pt``), each checked against the size limit."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    results = out_dir / "results.tar.gz"
    with tarfile.open(results, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.suffix != ".pt" and "claims" not in path.parts:
                tar.add(path, arcname=path.relative_to(out.parent).as_posix())
    written.append(results)
    for model in sorted(out.glob("paper_*/*/model.pt")):
        if len(written) >= 7:  # summary.txt is the 8th file
            log.warning("file limit: %s not packed", model)
            continue
        arc = out_dir / f"models_{model.parent.parent.name}_{model.parent.name}.tar.gz"
        with tarfile.open(arc, "w:gz") as tar:
            tar.add(model, arcname=model.relative_to(out.parent).as_posix())
        written.append(arc)
    for path in written:
        if path.stat().st_size > MAX_ARCHIVE:
            log.warning(
                "%s is %.1f MiB, over the %.0f MiB per-file limit",
                path,
                path.stat().st_size / 2**20,
                MAX_ARCHIVE / 2**20,
            )
    return written
