"""Forces as the negative gradient of the energy: the one place they are computed.

A backbone may offer a faster route to the same numbers through one optional, duck-typed hook::

    backbone.fast_energy_and_forces(model, graph, training) -> (energy, forces) | None

with the arguments and results of :func:`energy_and_forces`; it returns None where it does not
apply, and then autograd runs. For inference the energy and forces it returns carry no graph; for
training the forces must stay differentiable in the parameters (a force loss). The EGNN
implements it (:meth:`~emgp_md.models.egnn.plain.EGNN.fast_energy_and_forces`: fused kernels for
inference, explicit forces for training, on dense batches); a ``torch.compile`` wrapper of a
backbone does not use it.
"""

from __future__ import annotations

import torch

from emgp_md.data.graph import GraphBatch


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
        back-propagated. Off for inference, MD and evaluation. Either way a backbone's
        ``fast_energy_and_forces`` hook (module docstring) is asked first; where it returns
        None, autograd (with ``create_graph=training``).

    Returns
    -------
    energy : (n_graphs,) model energy unit, without the constant shift
    forces : (n_atoms, 3) model energy unit per Å
    """
    hook = getattr(getattr(model, "backbone", None), "fast_energy_and_forces", None)
    fast = hook(model, graph, training) if hook is not None else None
    if fast is not None:
        return fast
    with torch.enable_grad():
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
