"""MD stability of the shipped models (the 500 K campaign of ``docs/results_stability.md``).

For each molecule: Langevin MD at 500 K with 0.5 fs steps from the shipped reference geometry,
then :func:`emgp_md.analysis.analyze_trajectory` against the molecule's rMD17 frames: the stable time
(first frame where any starting bond deviates by more than 0.5 Å; the run length when none does) and
the agreement of the interatomic-distance distribution h(r) with the reference frames. One run per
molecule is written to ``<out>/<molecule>.*``; a molecule whose ``.json`` summary exists is skipped,
so an interrupted campaign continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from emgp_md.analysis.stability import StabilitySettings

log = logging.getLogger(__name__)


def run_stability(
    molecule: str,
    out_dir: str | Path,
    settings: StabilitySettings,
    reference_npz: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or reuse) the 500 K stability MD of one shipped molecule and analyse it.

    Returns
    -------
    dict
        :meth:`emgp_md.analysis.MDAnalysis.summary` plus ``molecule``, ``md_wall_s``,
        ``steps_per_s`` and ``model_sha256`` (the shipped file's SHA-256); also written to
        ``<out_dir>/<molecule>_analysis.json``.
    """
    from emgp_md.analysis import analyze_trajectory
    from emgp_md.calculator import EMGPCalculator
    from emgp_md.data.rmd17 import load_frames, split_path
    from emgp_md.md import run_md
    from emgp_md.plots import save_figure
    from emgp_md.plots.md import plot_md_analysis
    from emgp_md.pretrained import file_sha256, load_structure, model_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / f"{molecule}_analysis.json"
    if summary_path.exists():
        log.info("skip %s: %s exists", molecule, summary_path)
        return json.loads(summary_path.read_text())
    atoms = load_structure(molecule)
    atoms.calc = EMGPCalculator(molecule, dtype=settings.dtype)
    t0 = time.perf_counter()
    result = run_md(
        atoms,
        out / molecule,
        "langevin",
        settings.temperature_K,
        settings.timestep_fs,
        settings.steps,
        settings.friction_per_fs,
        settings.seed,
        settings.interval,
        progress=progress,
    )
    wall = time.perf_counter() - t0
    reference = load_frames(reference_npz or split_path(molecule, "test", 1))
    analysis = analyze_trajectory(result.trajectory, result.log_csv, reference, settings.threshold_A)
    save_figure(plot_md_analysis(analysis), out / f"{molecule}_analysis.png", dpi=110)
    summary = {
        "molecule": molecule,
        **analysis.summary(),
        "md_wall_s": wall,
        "steps_per_s": settings.steps / wall,
        "settings": settings.__dict__,
        "model_sha256": file_sha256(model_path(molecule)),  # which shipped model was run (defaults get replaced)
    }
    data = json.loads(analysis.to_json())
    data.update(summary)
    summary_path.write_text(json.dumps(data, indent=1) + "\n")
    return data
