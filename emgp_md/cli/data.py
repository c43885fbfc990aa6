"""Data commands: ``conformers`` (pretraining conformer sets) and ``fragment`` (SE3Set hypergraphs).

Register the commands with :func:`register`; each command parses, calls the library and reports.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add ``fragment`` and ``conformers`` to the CLI's sub-parsers (``sub = parser.add_subparsers(...)``)."""
    p = sub.add_parser("fragment", help="SE3Set hypergraph of a molecule: fragments, incidences, statistics")
    p.add_argument("structure", help="shipped molecule name (e.g. aspirin), structure file, or rMD17 .npz")
    p.add_argument("--mode", choices=["explicit", "implicit"], help="overlap mode (default: the preset's)")
    p.add_argument(
        "--preset",
        choices=["md17", "md22", "qm9"],
        default="md17",
        help="the authors' fragmenter settings (default md17: explicit, Lendvay)",
    )
    p.add_argument("--rc-A", dest="rc_A", type=float, help="implicit-mode cutoff in Å (default: the preset's, 4.0)")
    p.add_argument("--charge", type=int, default=0, help="total charge for bond perception")
    p.add_argument("--frame", type=int, default=0, help="frame of an .npz file used as reference geometry")
    p.add_argument("--png", help="write a 2D depiction coloured by fragment to this PNG")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=fragment_command)

    p = sub.add_parser("conformers", help="generate a sharded RDKit conformer set for pretraining")
    p.add_argument("source", help="SMILES CSV path or a named source: qm9, drugs, geom-qm9")
    p.add_argument("--out", required=True, help="new output folder")
    p.add_argument("--n-molecules", dest="n_molecules", type=int, help="seeded random draw of source rows")
    p.add_argument("--max-conformers", dest="max_conformers", type=int, default=10)
    p.add_argument("--n-embed", dest="n_embed", type=int, default=30, help="ETKDG embeddings per molecule")
    p.add_argument("--rmsd-threshold-A", dest="rmsd_threshold_A", type=float, default=0.5)
    p.add_argument(
        "--embed-timeout-s",
        dest="embed_timeout_s",
        type=float,
        default=1.0,
        help="time budget per ETKDG call (raise it for drug-sized molecules, e.g. 10)",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard-size", dest="shard_size", type=int, default=1000, help="molecules per shard")
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=conformers_command)


def conformers_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md conformers``: a sharded conformer set; exit 1 when no molecule was written."""
    from emgp_md.data.conformers import generate_conformer_set
    from emgp_md.data.smiles import resolve_source

    manifest = generate_conformer_set(
        resolve_source(args.source),
        args.out,
        n_molecules=args.n_molecules,
        max_conformers=args.max_conformers,
        rmsd_threshold_A=args.rmsd_threshold_A,
        seed=args.seed,
        n_workers=args.workers,
        shard_size=args.shard_size,
        n_embed=args.n_embed,
        embed_timeout_s=args.embed_timeout_s,
        progress=not args.quiet,
    )
    return 0 if manifest["n_molecules"] else 1


def fragment_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md fragment``: fragments and statistics (table or JSON), an optional PNG."""
    from dataclasses import replace

    from emgp_md.data.fragment import PRESETS
    from emgp_md.data.fragment_groups import perceive_bonds
    from emgp_md.data.hypergraph import build_hypergraph, fragment_records, hypergraph_statistics

    if args.structure.endswith(".npz"):
        from ase import Atoms

        from emgp_md.data.rmd17 import load_frames

        frames = load_frames(args.structure)
        if not 0 <= args.frame < len(frames.coords):
            raise ValueError(f"--frame {args.frame} is out of range: {args.structure} has {len(frames.coords)} frames")
        atoms = Atoms(numbers=frames.z, positions=frames.coords[args.frame])
    else:
        from emgp_md.pretrained import load_structure

        atoms = load_structure(args.structure)
    overrides = {"mode": args.mode, "implicit_rc_A": args.rc_A}
    options = replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    mol = perceive_bonds(atoms.numbers, atoms.positions, args.charge, atoms.get_chemical_formula())
    hg = build_hypergraph(atoms, options, mol=mol)
    stats = hypergraph_statistics(hg, atoms.positions)
    records = fragment_records(hg)
    if args.png:
        from emgp_md.plots.fragments import draw_fragments

        draw_fragments(hg, mol, args.png)
        log.info("wrote %s", args.png)
    if args.json:
        doc = {
            "structure": args.structure,
            "formula": atoms.get_chemical_formula(),
            "options": options.to_dict(),
            "fragments": records,
            "statistics": stats.to_dict(),
            "hypergraph": hg.to_dict(),
        }
        print(json.dumps(doc))
        return 0
    print(f"{atoms.get_chemical_formula()} ({args.structure}): {options.mode} overlap, preset {args.preset}")
    print("  frag  size  kernel  elements    atoms")
    for rec in records:
        print(
            f"  {rec['index']:4d}  {rec['size']:4d}  {len(rec['kernel_atoms']):6d}  {rec['elements']:10s}  "
            f"{' '.join(map(str, rec['atoms']))}"
        )
    for key, value in stats.to_dict().items():
        print(f"  {key:22s} {value:.4f}" if isinstance(value, float) else f"  {key:22s} {value}")
    return 0
