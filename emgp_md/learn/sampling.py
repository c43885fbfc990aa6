"""Sampling geometries of a new molecule: RDKit conformer → GFN2-xTB relaxation → GFN2-xTB Langevin MD.

xTB (through ``tblite``'s ASE calculator) is cheap enough to draw hundreds of diverse geometries at the
target temperature in a minute, for the expensive labeller (DFT) to label only the ones chosen.
The thermostat is the project's Langevin (:func:`emgp_md.md.make_dynamics`: ``fixcm=False`` with a
``FixCom`` constraint; with ASE's default ``fixcm``, small molecules run far hotter than asked).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ase import Atoms

log = logging.getLogger(__name__)

#: GFN2-xTB relaxation of the start: force threshold (eV/Å) and step cap.
RELAX_FMAX_EV_PER_A = 0.05
RELAX_STEPS = 200


def xtb_calculator() -> object:
    """tblite's GFN2-xTB ASE calculator (quiet); a clear error when tblite is absent."""
    try:
        from tblite.ase import TBLite
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError("GFN2-xTB needs tblite: pip install 'emgp-md[learn]' (or pip install tblite)") from None
    return TBLite(method="GFN2-xTB", verbosity=0)


@contextlib.contextmanager
def omp_threads(threads: int | None) -> Iterator[None]:
    """Set ``OMP_NUM_THREADS`` for the block (tblite reads it), restoring it afterwards."""
    if threads is None:
        yield
        return
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


def molecule_from_smiles(smiles: str, seed: int = 0) -> Atoms:
    """A 3D structure with hydrogens of ``smiles``: RDKit ETKDG embedding (seeded), MMFF (else UFF) optimised.

    Raises
    ------
    ValueError
        RDKit cannot parse ``smiles`` or cannot embed it in 3D; the message names the SMILES.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}: check it, or give a structure file instead")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise ValueError(f"RDKit cannot embed the SMILES {smiles!r} in 3D: give a structure file instead")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    else:
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return Atoms(numbers=numbers, positions=mol.GetConformer().GetPositions())


def start_structure(spec: str, seed: int = 0, threads: int | None = None) -> Atoms:
    """The start geometry of ``spec`` (an existing structure file, else a SMILES), relaxed with GFN2-xTB.

    Returns Atoms without a calculator (positions Å).
    """
    from ase.optimize import BFGS

    path = Path(spec)
    if path.is_file():
        import ase.io

        try:
            atoms = ase.io.read(path, index=0)
        except Exception as exc:  # ASE raises many kinds on malformed files
            raise ValueError(f"{path}: not a structure file ASE can read: {exc}") from exc
        if len(atoms) == 0:
            raise ValueError(f"{path}: the structure file holds no atoms")
    else:
        atoms = molecule_from_smiles(spec, seed=seed)
    atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    with omp_threads(threads):
        atoms.calc = xtb_calculator()
        BFGS(atoms, logfile=None).run(fmax=RELAX_FMAX_EV_PER_A, steps=RELAX_STEPS)
    return Atoms(numbers=atoms.numbers, positions=atoms.positions)


def sample_xtb_md(
    atoms: Atoms,
    n_frames: int,
    temperature_K: float,
    timestep_fs: float,
    stride_steps: int = 20,
    equilibration_steps: int = 200,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
    friction_per_fs: float = 0.01,
) -> list[Atoms]:
    """``n_frames`` geometries of GFN2-xTB Langevin MD at ``temperature_K``, one every ``stride_steps``.

    Velocities start Maxwell-Boltzmann (seeded), without centre-of-mass motion or rotation; the first
    ``equilibration_steps`` are discarded. Returned Atoms hold numbers and positions (Å) only.
    """
    from tqdm import tqdm

    from emgp_md.md import init_velocities, make_dynamics

    if n_frames < 1 or stride_steps < 1:
        raise ValueError(f"n_frames ({n_frames}) and stride_steps ({stride_steps}) must be at least 1")
    work = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    frames: list[Atoms] = []
    with omp_threads(threads):
        work.calc = xtb_calculator()
        init_velocities(work, temperature_K, seed)
        dyn = make_dynamics(work, "langevin", timestep_fs, temperature_K, friction_per_fs, seed)
        dyn.run(equilibration_steps)
        bar = tqdm(total=n_frames, desc="xTB MD", unit="frame", disable=not progress, leave=False)
        for _ in range(n_frames):
            dyn.run(stride_steps)
            frames.append(Atoms(numbers=work.numbers, positions=work.positions.copy()))
            bar.update()
        bar.close()
    log.info("sampled %d frames of GFN2-xTB MD at %.0f K (%d fs apart)", n_frames, temperature_K, stride_steps)
    return frames
