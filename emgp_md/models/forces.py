"""Forces as the negative gradient of the energy: the one place they are computed."""

from __future__ import annotations

import torch

from emgp_md.data.graph import GraphBatch
from emgp_md.models.egnn.fused import forces_only
from emgp_md.models.egnn.train import dense_energy_and_forces, explicit_forces_apply


def forces_from_energy(energy: torch.Tensor, pos: torch.Tensor, training: bool) -> torch.Tensor:
    """``F = -∂(Σ E)/∂pos``. ``energy``: (n_graphs,) built from ``pos`` (n_atoms, 3) Å with grad on.

    ``training`` keeps the graph of the gradient (``create_graph=True``) for a force loss.
    Molecules of a batch are independent, so the gradient of the sum gives every molecule's forces.
    """
    (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=training)
    return -grad


def energy_and_forces(
    model: torch.nn.Module, graph: GraphBatch, training: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy and forces ``F = -∂E/∂pos`` by autograd, from one forward and one backward pass.

    Parameters
    ----------
    model : EnergyModel
        Returns (n_graphs,) energies from a :class:`GraphBatch`.
    graph : GraphBatch
        Positions (n_atoms, 3) in Å.
    training : bool
        Keep the graph of the gradient (``create_graph=True``) so a force loss can be
        back-propagated. Off for inference, MD and evaluation; then the model runs inside
        :func:`~emgp_md.models.egnn.fused.forces_only` and may use fused first-order kernels
        (same numbers, gradients with respect to positions only). For training, an EGNN on
        equal-size dense molecules gets its forces written out explicitly
        (:func:`~emgp_md.models.egnn.train.dense_energy_and_forces`, same numbers, faster);
        other models use autograd with ``create_graph=True``.

    Returns
    -------
    energy : (n_graphs,) model energy unit, without the constant shift
    forces : (n_atoms, 3) model energy unit per Å
    """
    if training and explicit_forces_apply(model, graph):
        with torch.enable_grad(), forces_only(False):  # plain head even inside an inference block
            return dense_energy_and_forces(model, graph)
    with torch.enable_grad(), forces_only(not training):
        pos = graph.pos.detach().requires_grad_(True)
        energy = model(graph.with_pos(pos))
        forces = forces_from_energy(energy, pos, training)
    if not training:
        energy = energy.detach()
    return energy, forces


def energy_forces_pooled(
    model: torch.nn.Module, graph: GraphBatch, training: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`energy_and_forces`, also returning the pooled representation (n_graphs, hidden_nf)
    of a model with the pretraining head (for the noise-scale prediction of 3D-EMGP)."""
    with torch.enable_grad():
        pos = graph.pos.detach().requires_grad_(True)
        energy, pooled = model.energy_and_pooled(graph.with_pos(pos))
        forces = forces_from_energy(energy, pos, training)
    return energy, forces, pooled
