"""2D depiction of an SE3Set hypergraph with RDKit's drawing code (PNG, headless Cairo backend).

Each fragment gets a colour; an atom is drawn with the colours of every fragment that contains it
(its own kernel's colour first), so the overlap of explicit fragments is visible. Atom indices are
printed next to the atoms so that the picture matches ``emgp-md fragment`` tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emgp_md.data.hypergraph import Hypergraph

#: Colour-blind-friendly qualitative palette (Okabe–Ito), RGB in 0..1, reused cyclically.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.62, 0.00),
    (0.34, 0.71, 0.91),
    (0.00, 0.62, 0.45),
    (0.94, 0.89, 0.26),
    (0.00, 0.45, 0.70),
    (0.84, 0.37, 0.00),
    (0.80, 0.47, 0.65),
    (0.60, 0.60, 0.60),
)


def _single_bond_mol(hg: Hypergraph) -> Any:
    """RDKit molecule with the hypergraph's atoms and bonds (orders unknown: drawn single)."""
    from rdkit import Chem

    rw = Chem.RWMol()
    for z in hg.z.tolist():
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for i, j in hg.bonds.tolist():
        rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    return mol


def draw_fragments(
    hg: Hypergraph,
    mol: Any = None,
    path: str | Path | None = None,
    size: tuple[int, int] = (720, 540),
    legend: str | None = None,
) -> bytes:
    """Draw the molecule with atoms and bonds coloured by fragment.

    Parameters
    ----------
    hg : Hypergraph
    mol : rdkit.Chem.Mol, optional
        The molecule ``hg`` was built from (bond orders shown); default: rebuilt from ``hg.bonds``.
    path : str or Path, optional
        Where to write the PNG.
    size : (width, height) in pixels
    legend : str, optional
        Caption (default: mode and counts).

    Returns
    -------
    bytes
        The PNG image.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDepictor
    from rdkit.Chem.Draw import rdMolDraw2D

    depict = Chem.Mol(mol) if mol is not None else _single_bond_mol(hg)
    if depict.GetNumAtoms() != hg.n_atoms:
        raise ValueError(f"the molecule has {depict.GetNumAtoms()} atoms, the hypergraph {hg.n_atoms}")
    rdDepictor.Compute2DCoords(depict)
    members = [set(f.tolist()) for f in hg.fragments]
    atom_colours: dict[int, list[tuple[float, float, float]]] = {}
    for atom in range(hg.n_atoms):
        own = int(hg.kernel_of_atom[atom])
        order = [own] + [k for k, m in enumerate(members) if atom in m and k != own]
        atom_colours[atom] = [PALETTE[k % len(PALETTE)] for k in order]
    bond_colours: dict[int, list[tuple[float, float, float]]] = {}
    for bond in depict.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        shared = [PALETTE[k % len(PALETTE)] for k, m in enumerate(members) if i in m and j in m]
        if shared:
            bond_colours[bond.GetIdx()] = shared
    drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    drawer.drawOptions().addAtomIndices = True
    if legend is None:
        legend = (
            f"{hg.options.mode}: {hg.n_hyperedges} fragments, {hg.n_anchored} anchored hyperedges, "
            f"{hg.n_incidences} incidences"
        )
    drawer.DrawMoleculeWithHighlights(depict, legend, atom_colours, bond_colours, {}, {})
    drawer.FinishDrawing()
    png = drawer.GetDrawingText()
    if path is not None:
        Path(path).write_bytes(png)
    return png
