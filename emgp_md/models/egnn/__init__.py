"""The 3D-EMGP EGNN backbone (docs/architecture.md, "The model" and "Why it is fast").

- :mod:`~emgp_md.models.egnn.plain`: :class:`EGNN` and its layer :class:`EGCL` (paper layout,
  the authors' state-dict keys), the sparse path and the coordinate output of the "Direct" ablation.
- :mod:`~emgp_md.models.egnn.fused`: fused dense kernels for energy + forces inference.
- :mod:`~emgp_md.models.egnn.buffers`: their cached split weights and pooled workspaces.
- :mod:`~emgp_md.models.egnn.train`: explicit differentiable forces for training on dense batches.
"""

from __future__ import annotations

from emgp_md.models.egnn.plain import EGCL, EGNN

__all__ = ["EGCL", "EGNN"]
