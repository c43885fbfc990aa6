"""Training sets ready for a model: one topology per molecule, reference energies, batches of mixed molecules.

A :class:`~emgp_md.data.frames.Dataset` holds frames of one or many molecules. For training, each
molecule (group) gets its topology, perceived from its first frame, and every frame its reference
energy: the model learns ``(E - E_ref) / scale`` (normalised energy), and
:meth:`~emgp_md.models.energy_model.EnergyModel.total_energy` adds ``E_ref`` back in float64.

Reference energies (:func:`fit_reference`):

- one molecule: the mean training energy (the paper's normalisation; one constant shift);
- many molecules: per-element reference energies by least squares on the training set,
  ``E ≈ Σ_Z n_Z(molecule) ε_Z`` (as in SchNetPack, MACE and NequIP), stored in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from emgp_md.data.convert import attach_hypergraph
from emgp_md.data.frames import Dataset
from emgp_md.data.graph import GraphBatch, collate, repeat_topology
from emgp_md.data.topology import Topology, topology_from_positions


@dataclass(frozen=True)
class Reference:
    """Reference energy of a frame: ``shift + Σ_atoms atom_ref[Z]`` (the model's energy unit)."""

    shift: float = 0.0
    atom_ref: dict[int, float] | None = None

    def of(self, dataset: Dataset) -> np.ndarray:
        """(n_frames,) float64 reference energies of ``dataset``'s frames.

        Raises
        ------
        ValueError
            A frame holds an element without a reference energy.
        """
        if not self.atom_ref:
            return np.full(len(dataset), self.shift)
        missing = sorted(set(dataset.elements) - set(self.atom_ref))
        if missing:
            raise ValueError(f"no reference energy for element(s) {missing}: they are absent from the training set")
        elements = sorted(self.atom_ref)
        eps = np.array([self.atom_ref[z] for z in elements])
        return self.shift + dataset.element_counts(elements) @ eps


def fit_reference(train: Dataset) -> Reference:
    """Reference energies of a training set: the mean energy for one molecule, per-element least squares for many.

    With several molecules whose element counts do not determine every element's energy (e.g. all
    with the same formula), the least-squares solution of minimum norm is used; the residual energies
    are what the network learns either way.
    """
    energies = train.energies()
    if train.n_molecules == 1:
        return Reference(shift=float(energies.mean()))
    counts = train.element_counts()
    eps, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return Reference(atom_ref={int(z): float(e) for z, e in zip(train.elements, eps, strict=True)})


@dataclass
class PreparedSet:
    """A dataset with one topology per molecule and every frame's reference energy.

    Attributes
    ----------
    dataset : Dataset
    topologies : list of Topology
        One per group of ``dataset``.
    reference : (n_frames,) float64
        Reference energy per frame, dataset energy unit.
    """

    dataset: Dataset
    topologies: list[Topology]
    reference: np.ndarray
    energies: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.topologies) != self.dataset.n_molecules or self.reference.shape != (len(self.dataset),):
            raise ValueError("one topology per molecule and one reference energy per frame are needed")
        self.energies = self.dataset.energies()

    def __len__(self) -> int:
        return len(self.dataset)

    def n_atoms_per_frame(self) -> np.ndarray:
        """(n_frames,) number of atoms of every frame."""
        return np.concatenate([np.full(len(g), g.z.shape[0]) for g in self.dataset.groups])

    def batch(
        self, index: np.ndarray, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> tuple[GraphBatch, torch.Tensor, torch.Tensor]:
        """Graph, residual energies ``E - E_ref`` (n,) and forces (n_atoms_total, 3) of the frames at ``index``.

        Frames of one molecule are batched with :func:`repeat_topology` (dense fast path); frames of
        several molecules with :func:`collate`, in the order of ``index``.
        """
        index = np.asarray(index, dtype=np.int64)
        group, local = self.dataset.locate(index)
        residual = torch.as_tensor(self.energies[index] - self.reference[index], dtype=dtype, device=device)
        if np.all(group == group[0]):
            frames, topo = self.dataset.groups[int(group[0])], self.topologies[int(group[0])]
            graph = repeat_topology(topo, torch.as_tensor(frames.coords[local], dtype=dtype))
            forces = frames.forces[local].reshape(-1, 3)
        else:
            groups = [self.dataset.groups[g] for g in group]
            graph = collate(
                [self.topologies[g] for g in group], [g.coords[i] for g, i in zip(groups, local, strict=True)], dtype
            )
            forces = np.concatenate([g.forces[i] for g, i in zip(groups, local, strict=True)])
        return graph.to(device), residual, torch.as_tensor(forces, dtype=dtype, device=device)


def group_topologies(dataset: Dataset, hypergraph_options: object | None = None) -> list[Topology]:
    """One topology per molecule of ``dataset``, perceived from its first frame (with an SE3Set hypergraph
    when ``hypergraph_options`` is given)."""
    topologies = []
    for frames in dataset.groups:
        topo = topology_from_positions(frames.z, frames.coords[0])
        if hypergraph_options is not None:
            topo = attach_hypergraph(topo, frames.coords[0], hypergraph_options)  # type: ignore[arg-type]
        topologies.append(topo)
    return topologies


def prepare(dataset: Dataset, reference: Reference, hypergraph_options: object | None = None) -> PreparedSet:
    """Topologies and reference energies of ``dataset`` for training or evaluation."""
    return PreparedSet(dataset, group_topologies(dataset, hypergraph_options), reference.of(dataset))
