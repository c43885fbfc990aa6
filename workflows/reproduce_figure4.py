"""Figure 4 analogue: landscapes of differently pretrained models, summary table, fine-tuned error map.

Writes, for a GEOM-like conformer and a relaxed rMD17 molecule, the grids of every model on shared
random directions (``<out>/<structure>.npz/.csv/.json``), side-by-side figures
(``<figures>/figure4_<structure>.png``), a summary table (``<out>/figure4_summary.md``), and for the
shipped fine-tuned model its energy vs the DFT reference on the rMD17 test frames' PC plane
(``<figures>/figure4_pcmap_*``). Models whose checkpoint is missing are skipped with a warning.

Example::

    python workflows/reproduce_figure4.py workflows/configs/figure4.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import ase.io

from emgp_md.config import ModelConfig, load_yaml

log = logging.getLogger("reproduce_figure4")


@dataclass
class Figure4Config:
    """Inputs of the Figure 4 analogue (see workflows/configs/figure4.yaml)."""

    out: str = "runs/figure4"
    figures: str = "docs/figures"
    smiles: str = "C#CC1=CCOC[C@@H]1O"
    rmd17_molecule: str = "aspirin"
    extent_A: float = 0.4
    n: int = 41
    seed: int = 0
    models: dict[str, str] = field(default_factory=dict)


def resolve_models(cfg: Figure4Config, out: Path) -> dict[str, str]:
    """Label → checkpoint path; ``@authors`` and ``@random`` are created in ``out``."""
    from emgp_md.data.rmd17 import default_data_dir
    from emgp_md.landscape.figure4 import random_init_checkpoint
    from emgp_md.models.official import import_official

    models = {}
    for label, spec in cfg.models.items():
        if spec == "@authors":
            path = out / "authors.pt"
            if not path.exists():
                import_official(default_data_dir() / "emgp_official" / "checkpoint-3dmgp", path)
        elif spec == "@random":
            path = random_init_checkpoint(out / "random_init.pt",
                                          ModelConfig(hidden_nf=64, n_layers=4, head="pooled", noise_levels=50))
        else:
            path = Path(spec)
            if not path.exists():
                log.warning("skipping %r: %s does not exist (run workflows/reproduce_md17.py first)", label, path)
                continue
        models[label] = str(path)
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_yaml(Figure4Config, args.config)
    from emgp_md.cli import main as cli_main
    from emgp_md.data.rmd17 import split_path
    from emgp_md.landscape import save_landscapes
    from emgp_md.landscape.figure4 import geom_like_conformer, landscapes_for, relaxed_structure, summary_table
    from emgp_md.landscape_plots import plot_landscapes

    out, figures = Path(cfg.out), Path(cfg.figures)
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    structures = {"geom_like": geom_like_conformer(cfg.smiles, cfg.seed),
                  f"{cfg.rmd17_molecule}_relaxed": relaxed_structure(cfg.rmd17_molecule)}
    models = resolve_models(cfg, out)
    results = {}
    for name, atoms in structures.items():
        ase.io.write(out / f"{name}.xyz", atoms)
        lands = landscapes_for(atoms, models, cfg.extent_A, cfg.n, cfg.seed)
        save_landscapes(out / name, lands, {"structure": name, "smiles": cfg.smiles if name == "geom_like" else None})
        title = f"{atoms.get_chemical_formula()} ({name.replace('_', ' ')}): energy around X₀, random directions"
        plot_landscapes(lands, title=title).savefig(figures / f"figure4_{name}.png", dpi=110)
        results[name] = lands
    (out / "figure4_summary.md").write_text(summary_table(results) + "\n")
    test = split_path(cfg.rmd17_molecule, "test", 1)
    cli_main(["landscape", cfg.rmd17_molecule, "--directions", "pca", "--frames", str(test), "--error-map",
              "--n", "31", "--out", str(figures / "figure4_finetuned")])
    log.info("wrote %s and figures in %s", out / "figure4_summary.md", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
