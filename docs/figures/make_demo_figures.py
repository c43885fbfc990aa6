"""Regenerate the RANDOM-MODEL demonstration figures of docs/landscapes.md.

The two models are untrained, randomly initialised EGNNs: the figures show what the tools draw and
how to read them, not how any trained model behaves. Run from the repository root::

    OMP_NUM_THREADS=1 python docs/figures/make_demo_figures.py [--data ../shared/data/rmd17]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms

from emgp_md.calculator import EMGPCalculator
from emgp_md.cli import build_parser
from emgp_md.config import ModelConfig
from emgp_md.data.rmd17 import load_frames
from emgp_md.landscape import scan_dihedral
from emgp_md.md import run_md
from emgp_md.models import build_model
from emgp_md.models.checkpoint import make_metadata, save_checkpoint
from emgp_md.plots.landscape import plot_scans

FIGURES = Path(__file__).resolve().parent


def random_checkpoint(path: Path, head: str, unit: str, seed: int) -> Path:
    """An untrained EGNN (hidden 32, 3 layers) saved as a checkpoint."""
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden_nf=32, n_layers=3, head=head)
    model = build_model(cfg, energy_scale=10.0).eval()
    save_checkpoint(path, model, make_metadata(cfg, species=[1, 6, 8], energy_unit=unit, name=path.stem))
    return path


def cli(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/rmd17", help="folder with rmd17_aspirin_test_01.npz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    npz = Path(args.data) / "rmd17_aspirin_test_01.npz"
    frames = load_frames(npz)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        x0 = tmp / "aspirin_x0.xyz"
        ase.io.write(x0, Atoms(numbers=frames.z, positions=frames.coords[0]))
        a = random_checkpoint(tmp / "random_atomwise.pt", "atomwise", "kcal/mol", seed=1)
        b = random_checkpoint(tmp / "random_pooled.pt", "pooled", "arbitrary", seed=2)
        models = ["--model", f"random A (atomwise head)={a}", "--model", f"random B (pooled head, arbitrary)={b}"]
        cli(["landscape", str(x0), *models, "--directions", "random", "--n", "41", "--out", str(tmp / "random")])
        cli(
            [
                "landscape",
                str(x0),
                *models[:2],
                "--directions",
                "pca",
                "--frames",
                str(npz),
                "--error-map",
                "--n",
                "41",
                "--out",
                str(tmp / "pca"),
            ]
        )
        atoms = ase.io.read(x0)
        atoms.calc = EMGPCalculator(model=a, dtype="float64")
        scan = scan_dihedral(atoms, _a_dihedral(atoms), np.arange(0.0, 360.0, 10.0))
        plot_scans(scan).savefig(FIGURES / "scan_demo.png", dpi=110)
        run = run_md(
            atoms,
            tmp / "md" / "run",
            ensemble="nve",
            temperature_K=300.0,
            timestep_fs=0.5,
            steps=1000,
            interval=5,
            seed=0,
            progress=False,
        )
        cli(["analyze", str(run.trajectory), "--reference", str(npz), "--out", str(tmp / "md_analysis")])
        pcmap = next(tmp.glob("pca_pcmap_random_A*.png"))
        for src, dst in (
            (tmp / "random.png", "landscape_random_demo.png"),
            (tmp / "pca.png", "landscape_pca_demo.png"),
            (pcmap, "pcmap_demo.png"),
            (tmp / "md_analysis.png", "md_analysis_demo.png"),
        ):
            (FIGURES / dst).write_bytes(src.read_bytes())


def _a_dihedral(atoms: Atoms) -> tuple[int, int, int, int]:
    """A dihedral i-j-k-l about a single bond j-k outside rings, with heavy atoms i and l."""
    from emgp_md.data.topology import bonds_from_distances
    from emgp_md.landscape.scans import moving_fragment

    bonds = bonds_from_distances(atoms.positions)
    heavy = atoms.numbers > 1
    for j, k in bonds:
        if not (heavy[j] and heavy[k]) or len(moving_fragment(bonds, len(atoms), int(j), int(k))) < 2:
            continue  # a ring bond or a terminal atom
        ends = [
            [int(n) for pair in bonds for n in pair if x in pair and n not in (x, y) and heavy[n]]
            for x, y in ((j, k), (k, j))
        ]
        if ends[0] and ends[1]:
            return ends[0][0], int(j), int(k), ends[1][0]
    raise ValueError("no rotatable dihedral with heavy end atoms found")


if __name__ == "__main__":
    main()
