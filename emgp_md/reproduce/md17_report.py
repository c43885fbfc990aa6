"""Tables and figure of the MD17 reproduction, built from the run folders of a campaign.

Reads ``<out>/<spec>/<molecule>/metrics.json`` (and ``config.json``) of every finished fine-tuning
run and writes ``results_md17.md`` (Table 1 and Table 3 analogues, budgets), ``results_md17.json``
and ``figures/md17_force_mae.png`` into a report folder. Unfinished runs show as "–".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.plots import save_figure
from emgp_md.reproduce.campaign import CampaignConfig

log = logging.getLogger(__name__)

KCAL_TO_MEV = 43.364  # 1 kcal/mol in meV (ase.units.kcal / ase.units.mol * 1000 = 43.364)

#: Paper Table 1, force MAE kcal/mol/Å, original MD17, 9,500 training frames (Jiao et al. 2023, Table 1; docs/method.md §6).
PAPER_BASE_F = {
    "aspirin": 0.3885,
    "benzene": 0.1861,
    "ethanol": 0.0599,
    "malonaldehyde": 0.1464,
    "naphthalene": 0.3310,
    "salicylic": 0.2683,
    "toluene": 0.1563,
    "uracil": 0.1323,
}
PAPER_EMGP_F = {
    "aspirin": 0.1560,
    "benzene": 0.1648,
    "ethanol": 0.0389,
    "malonaldehyde": 0.0737,
    "naphthalene": 0.0829,
    "salicylic": 0.1187,
    "toluene": 0.0619,
    "uracil": 0.0773,
}
#: SchNet, original MD17, N = 1000, force MAE kcal/mol/Å (Schütt et al., NeurIPS 2017): the bar a shipped model must beat.
SCHNET_F = {
    "aspirin": 1.35,
    "benzene": 0.31,
    "ethanol": 0.39,
    "malonaldehyde": 0.66,
    "naphthalene": 0.58,
    "salicylic": 0.85,
    "toluene": 0.57,
    "uracil": 0.56,
}
#: MACE, rMD17 950/50, force MAE meV/Å (Batatia et al., NeurIPS 2022, Table 1).
MACE_F_MEV = {
    "aspirin": 6.6,
    "benzene": 0.3,
    "ethanol": 2.1,
    "malonaldehyde": 4.1,
    "naphthalene": 1.6,
    "salicylic": 3.1,
    "toluene": 1.5,
    "uracil": 2.1,
}
#: Paper Table 3, average over 8 molecules (energy kcal/mol, force kcal/mol/Å).
PAPER_TABLE3 = {
    "scratch": (0.1191, 0.2086),
    "t3_ours": (0.0876, 0.0968),
    "t3_inp_only": (0.0974, 0.1350),
    "t3_efp_only": (0.0905, 0.1193),
    "t3_gaussian": (0.0912, 0.1060),
    "t3_distance": (0.0931, 0.1292),
    "t3_direct": (0.0914, 0.1267),
}
TABLE3_LABELS = {
    "t3_ours": "Ours (EFP+INP, Riemann)",
    "t3_inp_only": "INP only",
    "t3_efp_only": "EFP only",
    "t3_gaussian": "Gaussian",
    "t3_distance": "Distance",
    "t3_direct": "Direct",
    "scratch": "Scratch (Base)",
}


def collect(cfg: CampaignConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """``results[spec][molecule]`` = test/val metrics, epochs, wall time, architecture of finished runs."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in cfg.finetune:
        for mol in spec.molecules or cfg.molecules:
            run = Path(cfg.out) / spec.name / mol
            metrics_path = run / "metrics.json"
            if not metrics_path.exists():
                continue
            metrics = json.loads(metrics_path.read_text())
            if not metrics.get("finished") or "test" not in metrics:
                continue
            conf = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
            model = conf.get("config", conf).get("model", {})
            results.setdefault(spec.name, {})[mol] = {
                "test": metrics["test"],
                "val": metrics["val"],
                "epochs": metrics["epochs"],
                "wall_s": metrics["wall_s"],
                "cpu_s": metrics.get("cpu_s"),
                "best_epoch": metrics.get("best_epoch"),
                "architecture": f"{model.get('n_layers', '?')}x{model.get('hidden_nf', '?')}",
                "pretrained": conf.get("pretrained", conf.get("config", {}).get("pretrained")),
                "run": str(run),
            }
    return results


def _f(results: dict, spec: str, mol: str, key: str = "force_mae_kcal_mol_A") -> float | None:
    entry = results.get(spec, {}).get(mol)
    return None if entry is None else float(entry["test"][key])


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def table1(results: dict, molecules: list[str]) -> str:
    """Markdown Table 1 analogue (force and energy MAE on test_01, gain, paper and anchors)."""
    header = (
        "| molecule | scratch 4×64 F | ours 4×64 F | gain (scratch/ours) | official 7×128 F | "
        "scratch E | ours E | official E | paper Base F | paper 3D-EMGP F | SchNet F (MD17) | MACE F (rMD17, meV/Å) |"
    )
    lines = [
        header,
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mol in molecules:
        s, o, c = (_f(results, k, mol) for k in ("scratch", "ours", "official"))
        gain = s / o if s is not None and o is not None and o > 0 else None
        es, eo, ec = (_f(results, k, mol, "energy_mae_kcal_mol") for k in ("scratch", "ours", "official"))
        lines.append(
            f"| {mol} | {_fmt(s)} | {_fmt(o)} | {_fmt(gain, 2)} | {_fmt(c)} | {_fmt(es)} | {_fmt(eo)} | {_fmt(ec)} | "
            f"{PAPER_BASE_F[mol]:.4f} | {PAPER_EMGP_F[mol]:.4f} | {SCHNET_F[mol]:.2f} | {MACE_F_MEV[mol]:.1f} |"
        )
    return "\n".join(lines)


def table_mev(results: dict, molecules: list[str], specs: list[str]) -> str:
    """The same runs in meV and meV/Å (rMD17 convention)."""
    head = " | ".join(f"{s} E / F" for s in specs)
    lines = [f"| molecule | {head} |", "|---|" + "---|" * len(specs)]
    for mol in molecules:
        cells = [
            f"{_fmt(_f(results, s, mol, 'energy_mae_meV'), 1)} / {_fmt(_f(results, s, mol, 'force_mae_meV_A'), 1)}"
            for s in specs
        ]
        lines.append(f"| {mol} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table3(results: dict) -> str:
    """Markdown Table 3 analogue on aspirin and ethanol (kcal/mol, kcal/mol/Å)."""
    lines = [
        "| variant | aspirin E | aspirin F | ethanol E | ethanol F | paper avg E | paper avg F |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec, label in TABLE3_LABELS.items():
        cells = [
            _fmt(_f(results, spec, m, k))
            for m in ("aspirin", "ethanol")
            for k in ("energy_mae_kcal_mol", "force_mae_kcal_mol_A")
        ]
        pe, pf = PAPER_TABLE3[spec]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {pe:.4f} | {pf:.4f} |")
    return "\n".join(lines)


def budgets(results: dict) -> str:
    """Epochs, best epoch, wall time and architecture of every run."""
    lines = ["| run | molecule | architecture | epochs | best epoch | wall time (min) |", "|---|---|---|---|---|---|"]
    for spec, runs in results.items():
        for mol, r in runs.items():
            lines.append(
                f"| {spec} | {mol} | {r['architecture']} | {r['epochs']} | {r['best_epoch']} | {r['wall_s'] / 60:.1f} |"
            )
    return "\n".join(lines)


def plot_force_mae(results: dict, molecules: list[str], path: Path) -> Path:
    """Grouped bars of test force MAE per molecule (scratch, ours, official) with the SchNet marker."""
    from emgp_md.plots.reports import plot_md17_force_mae

    values = {spec: [_f(results, spec, m) or np.nan for m in molecules] for spec in ("scratch", "ours", "official")}
    fig = plot_md17_force_mae(values, [SCHNET_F[m] for m in molecules], molecules)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=130)
    return path


def write_report(cfg: CampaignConfig, report_dir: str | Path) -> list[Path]:
    """Write ``results_md17.md``, ``results_md17.json`` and ``figures/md17_force_mae.png``."""
    out = Path(report_dir)
    results = collect(cfg)
    molecules = list(cfg.molecules)
    md = (
        "\n\n".join(
            [
                "<!-- generated by workflows/reproduce_md17.py; edit docs/results.md instead -->",
                "# MD17 reproduction: generated tables",
                "Test frames: rMD17 `test_01` (1000 frames); training: 950 + 50 validation frames of `train_01`.",
                "## Table 1 analogue (kcal/mol, kcal/mol/Å)",
                table1(results, molecules),
                "## The same runs in meV and meV/Å",
                table_mev(results, molecules, ["scratch", "ours", "official"]),
                "## Table 3 analogue (kcal/mol, kcal/mol/Å)",
                table3(results),
                "## Budgets",
                budgets(results),
            ]
        )
        + "\n"
    )
    paths = [out / "results_md17.md", out / "results_md17.json"]
    out.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(md)
    paths[1].write_text(json.dumps(results, indent=1))
    paths.append(plot_force_mae(results, molecules, out / "figures" / "md17_force_mae.png"))
    return paths
