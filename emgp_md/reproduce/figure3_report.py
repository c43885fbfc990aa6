"""Figure 3 analogue ("different backbones"): table and figure from the run folders of a campaign.

The campaign (``workflows/configs/figure3.yaml``) has, per backbone, one fine-tuning spec from
scratch and one from that backbone's own pretraining. This module reads the finished runs
(:func:`emgp_md.reproduce.md17_report.collect`) and writes ``results_figure3.md`` (test force and
energy MAE per backbone, initialisation and molecule, in kcal/mol and meV, with parameters,
epochs and wall time) and ``figures/figure3_backbones.png`` (grouped bars of the test force MAE,
scratch vs pretrained, one panel per molecule). Unfinished runs show as "–".
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.plots import save_figure
from emgp_md.reproduce.campaign import CampaignConfig, finetune_jobs, pretrain_jobs
from emgp_md.reproduce.md17_report import collect

log = logging.getLogger(__name__)

BACKBONE_LABELS = {"egnn": "EGNN", "schnet": "SchNet", "et": "ET", "se3set": "SE3Set"}
INITS = ("scratch", "pretrained")
#: Test metrics of a row, in table order: (metrics key, column label).
METRICS = (
    ("force_mae_kcal_mol_A", "F kcal/mol/Å"),
    ("energy_mae_kcal_mol", "E kcal/mol"),
    ("force_mae_meV_A", "F meV/Å"),
    ("energy_mae_meV", "E meV"),
)


@dataclass(frozen=True)
class SpecRow:
    """One fine-tuning spec of the campaign as a table row."""

    spec: str
    backbone: str
    init: str
    model: dict[str, Any]
    pretrained: str | None


def spec_rows(cfg: CampaignConfig) -> list[SpecRow]:
    """Backbone, initialisation ("scratch" or "pretrained") and model config of every spec, in config order."""
    rows: dict[str, SpecRow] = {}
    for job in finetune_jobs(cfg):
        if job.name in rows:
            continue
        model = dict(job.config.get("model") or {})
        pretrained = job.config.get("pretrained")
        rows[job.name] = SpecRow(
            job.name, str(model.get("backbone", "egnn")), "pretrained" if pretrained else "scratch", model, pretrained
        )
    return list(rows.values())


def count_parameters(model: dict[str, Any]) -> int | None:
    """Trainable parameters of the energy model a ``model:`` mapping describes (None if it cannot be built)."""
    import torch

    from emgp_md.config import ModelConfig, from_dict
    from emgp_md.models import build_model

    try:
        torch.manual_seed(0)
        built = build_model(from_dict(ModelConfig, model))
    except (ValueError, TypeError) as exc:
        log.warning("cannot build model %s to count its parameters: %s", model, exc)
        return None
    return sum(p.numel() for p in built.parameters() if p.requires_grad)


def _run_model(results: dict, spec: str) -> dict[str, Any] | None:
    """The model config a finished run of ``spec`` actually used (its config.json), if any."""
    for entry in results.get(spec, {}).values():
        path = Path(entry["run"]) / "config.json"
        if path.exists():
            conf = json.loads(path.read_text())
            model = conf.get("config", conf).get("model")
            if model:
                return dict(model)
    return None


def _fmt(x: float | None, digits: int) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _metric(results: dict, spec: str, mol: str, key: str) -> float | None:
    entry = results.get(spec, {}).get(mol)
    if entry is None or key not in entry["test"]:
        return None
    return float(entry["test"][key])


def _params(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _budgets(jobs: list, unit: str = "") -> str | None:
    """The distinct ``cpu_budget_s`` values of ``jobs`` ("240" or "240 / 300"), or None when none is set."""
    values = sorted({job.config.get("cpu_budget_s") for job in jobs} - {None})
    return " / ".join(f"{v:g}{unit}" for v in values) if values else None


def budget_text(cfg: CampaignConfig) -> str:
    """One sentence on the campaign's CPU budgets (``cpu_budget_s`` of its runs), or ``""`` when none is set."""
    fine, pre = _budgets(finetune_jobs(cfg)), _budgets(pretrain_jobs(cfg))
    if fine is None and pre is None:
        return ""
    return (
        f"CPU budget per run (`cpu_budget_s`, CPU seconds of the training process, 1 thread): "
        f"fine-tuning {fine or 'none'}, pretraining {pre or 'none'}; a run ends, finished, at the first batch "
        f"past it or when its epochs are done, whichever comes first (the CPU time columns say which)."
    )


def budget_caption(cfg: CampaignConfig) -> str:
    """Short budget line for the figure, e.g. ``"CPU budget per run: fine-tuning 240 s, pretraining 300 s"``."""
    fine, pre = _budgets(finetune_jobs(cfg), " s"), _budgets(pretrain_jobs(cfg), " s")
    return f"CPU budget per run: fine-tuning {fine or 'no limit'}, pretraining {pre or 'no limit'}"


def backbone_table(results: dict, rows: list[SpecRow], molecules: list[str], parameters: dict[str, int | None]) -> str:
    """Markdown table: one row per spec, test MAEs per molecule, epochs, CPU time (the training
    process's, ``cpu_s`` of metrics.json) and wall time per molecule."""
    cols = [f"{mol} {label}" for mol in molecules for _, label in METRICS]
    lines = [
        "| backbone | parameters | init | " + " | ".join(cols) + " | epochs | CPU time (s) | wall time (min) |",
        "|---|---|---|" + "---|" * len(cols) + "---|---|---|",
    ]
    for row in rows:
        cells = []
        for mol in molecules:
            for key, _ in METRICS:
                cells.append(_fmt(_metric(results, row.spec, mol, key), 3 if "kcal" in key else 1))
        runs = [results.get(row.spec, {}).get(mol) for mol in molecules]
        epochs = " / ".join("–" if r is None else str(r["epochs"]) for r in runs)
        cpu = " / ".join("–" if r is None or r.get("cpu_s") is None else f"{r['cpu_s']:.0f}" for r in runs)
        wall = " / ".join("–" if r is None else f"{r['wall_s'] / 60:.1f}" for r in runs)
        label = BACKBONE_LABELS.get(row.backbone, row.backbone)
        lines.append(
            f"| {label} | {_params(parameters.get(row.spec))} | {row.init} | "
            + " | ".join(cells)
            + f" | {epochs} | {cpu} | {wall} |"
        )
    return "\n".join(lines)


def gain_table(results: dict, rows: list[SpecRow], molecules: list[str]) -> str:
    """Markdown table: scratch / pretrained test force MAE per backbone and molecule (> 1: pretraining helps)."""
    lines = ["| backbone | " + " | ".join(f"{mol} gain" for mol in molecules) + " |", "|---|" + "---|" * len(molecules)]
    for backbone in _backbones(rows):
        cells = []
        for mol in molecules:
            s, p = (_force(results, rows, backbone, init, mol) for init in INITS)
            cells.append(_fmt(s / p if s is not None and p is not None and p > 0 else None, 2))
        lines.append(f"| {BACKBONE_LABELS.get(backbone, backbone)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _backbones(rows: list[SpecRow]) -> list[str]:
    return list(dict.fromkeys(r.backbone for r in rows))


def _force(results: dict, rows: list[SpecRow], backbone: str, init: str, mol: str) -> float | None:
    """Test force MAE (kcal/mol/Å) of the first spec with this backbone and initialisation."""
    for row in rows:
        if row.backbone == backbone and row.init == init:
            return _metric(results, row.spec, mol, "force_mae_kcal_mol_A")
    return None


def pretrain_table(cfg: CampaignConfig) -> str:
    """Markdown table of the campaign's pretraining runs: epochs logged, best validation loss,
    last INP accuracy, CPU and wall time, molecules skipped for want of a hypergraph."""
    lines = [
        (
            "| run | backbone | epochs logged | best val loss | last val INP accuracy | CPU time (s) | wall time (min) | "
            "molecules skipped |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for job in pretrain_jobs(cfg):
        backbone = (job.config.get("model") or {}).get("backbone", "egnn")
        rows = []
        if (job.out / "log.csv").exists():
            with (job.out / "log.csv").open() as handle:
                rows = list(csv.DictReader(handle))
        best = min((float(r["val_loss"]) for r in rows), default=None)
        acc = float(rows[-1]["val_inp_acc"]) if rows else None
        wall = float(rows[-1]["wall_s"]) / 60 if rows else None
        cpu = _pretrain_cpu_s(job.out)
        skipped = "–"
        if (job.out / "hypergraphs.json").exists():
            skipped = str(len(json.loads((job.out / "hypergraphs.json").read_text()).get("failed", [])))
        done = "" if job.finished else " (unfinished)" if rows else " (not run)"
        lines.append(
            f"| {job.name}{done} | {BACKBONE_LABELS.get(backbone, backbone)} | {len(rows)} | "
            f"{_fmt(best, 3)} | {_fmt(acc, 3)} | {_fmt(cpu, 0)} | {_fmt(wall, 1)} | {skipped} |"
        )
    return "\n".join(lines)


def _pretrain_cpu_s(run: Path) -> float | None:
    """CPU seconds a pretraining run used: from its ``summary.json``, else from its last ``state.pt``."""
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text()).get("cpu_s")
    if (run / "state.pt").exists():
        from emgp_md.models.checkpoint import safe_torch_load

        return safe_torch_load(run / "state.pt", what="training state").get("cpu_s")
    return None


def plot_backbones(results: dict, rows: list[SpecRow], molecules: list[str], path: Path, subtitle: str = "") -> Path:
    """Grouped bars of test force MAE per backbone, scratch vs pretrained, one panel per molecule (log y);
    ``subtitle`` (e.g. the budgets) goes under the title."""
    from emgp_md.plots.reports import plot_backbone_bars

    backbones = _backbones(rows)
    values = {
        mol: {init: [_force(results, rows, b, init, mol) or np.nan for b in backbones] for init in INITS}
        for mol in molecules
    }
    fig = plot_backbone_bars(values, [BACKBONE_LABELS.get(b, b) for b in backbones], subtitle)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=130)
    return path


def write_report(cfg: CampaignConfig, report_dir: str | Path = "docs") -> list[Path]:
    """Write ``results_figure3.md`` and ``figures/figure3_backbones.png`` into ``report_dir``."""
    out = Path(report_dir)
    results = collect(cfg)
    rows = spec_rows(cfg)
    molecules = list(cfg.molecules)
    cache: dict[str, int | None] = {}
    parameters = {}
    for row in rows:
        model = _run_model(results, row.spec) or row.model
        key = json.dumps(model, sort_keys=True)
        if key not in cache:
            cache[key] = count_parameters(model)
        parameters[row.spec] = cache[key]
    md = (
        "\n\n".join(
            [
                "<!-- generated by workflows/figure3.py; edit docs/results.md instead -->",
                "# Figure 3 analogue: backbones, from scratch vs pretrained (generated)",
                f"Campaign folder `{cfg.out}`. Test frames: rMD17 `test_{cfg.split:02d}`; training: the frames of "
                f'`train_{cfg.split:02d}` set by each run\'s config. Test mean absolute errors; "–": run not finished. '
                "Epochs, CPU time and wall time are per molecule in the order of the columns; the wall time also "
                "counts time a run spent waiting for a core (runs share the machine), the CPU time does not. "
                + budget_text(cfg),
                "## Test errors per backbone",
                backbone_table(results, rows, molecules, parameters),
                "## Gain from pretraining (scratch / pretrained force MAE)",
                gain_table(results, rows, molecules),
                "## Pretraining runs",
                pretrain_table(cfg),
                "![Figure 3 analogue](figures/figure3_backbones.png)",
            ]
        )
        + "\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results_figure3.md"]
    paths[0].write_text(md)
    paths.append(
        plot_backbones(
            results, rows, molecules, out / "figures" / "figure3_backbones.png", subtitle=budget_caption(cfg)
        )
    )
    return paths
