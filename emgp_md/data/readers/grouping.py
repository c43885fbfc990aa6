"""From per-frame arrays to a :class:`~emgp_md.data.frames.Dataset`: frames grouped by molecule.

A group holds the frames of one molecule as the model sees it: the same atomic numbers in the same
order and the same bond graph (perceived from each frame's geometry with covalent radii,
:func:`emgp_md.data.bonds.perceive_bonds`). Frames of one molecule in two atom orders, or one atom
order whose bonds differ (isomers, a broken bond), land in different groups; each group gets one
topology in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emgp_md.data.bonds import perceive_bonds
from emgp_md.data.frames import Dataset, Frames
from emgp_md.data.identity import formula


def check_finite(values: np.ndarray, what: str, source: str) -> None:
    """Refuse NaN or infinite labels, naming the first bad frame."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{source}: {what} of frame {int(np.argmax(bad))} is not finite ({int(bad.sum())} frames)")


def group_frames(
    numbers: Sequence[np.ndarray],
    coords: Sequence[np.ndarray],
    energies: np.ndarray,
    forces: Sequence[np.ndarray],
    energy_unit: str,
    source: str,
    name: str | None = None,
) -> Dataset:
    """A dataset of frames given one by one, grouped by atom order and bond graph (first-seen order).

    Parameters
    ----------
    numbers : per frame (n_atoms_i,) int atomic numbers
    coords : per frame (n_atoms_i, 3) float, Å
    energies : (n_frames,) float, ``energy_unit``
    forces : per frame (n_atoms_i, 3) float, ``energy_unit`` per Å
    energy_unit : str
        Unit the numbers are in (declared by the file or the user).
    source : str
        Path of the file, for messages and provenance.
    name : str, optional
        Label of the molecule when the file holds one; groups are named by formula otherwise.
    """
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)
    if not len(energies):
        raise ValueError(f"{source}: no frames")
    check_finite(energies, "the energy", source)
    keys: dict[tuple[bytes, bytes], list[int]] = {}
    for i, (z, pos, f) in enumerate(zip(numbers, coords, forces, strict=True)):
        z = np.asarray(z, dtype=np.int64)
        if np.asarray(pos).shape != (len(z), 3) or np.asarray(f).shape != (len(z), 3):
            raise ValueError(
                f"{source}: frame {i} has {len(z)} atoms but positions of shape {np.shape(pos)} "
                f"and forces of shape {np.shape(f)}"
            )
        check_finite(np.asarray(f)[None], f"the forces (frame {i})", source)
        bonds = perceive_bonds(z, np.asarray(pos, dtype=np.float64))
        keys.setdefault((z.tobytes(), bonds.tobytes()), []).append(i)
    groups = []
    for idx in keys.values():
        z = np.asarray(numbers[idx[0]], dtype=np.int64)
        groups.append(
            Frames(
                z=z,
                coords=np.stack([np.asarray(coords[i], dtype=np.float64) for i in idx]),
                energies=energies[idx],
                forces=np.stack([np.asarray(forces[i], dtype=np.float64) for i in idx]),
                source=source,
                energy_unit=energy_unit,
                name=name or formula(z),
            )
        )
    _number_duplicate_names(groups, name)
    return Dataset(groups, energy_unit, source)


def _number_duplicate_names(groups: list[Frames], name: str | None) -> None:
    """Give groups sharing a name a running number (``C7H10O2 #2``), so per-molecule rows stay apart."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g.name] = counts.get(g.name, 0) + 1
    seen: dict[str, int] = {}
    for g in groups:
        if counts[g.name] > 1:
            seen[g.name] = seen.get(g.name, 0) + 1
            g.name = f"{g.name} #{seen[g.name]}"
