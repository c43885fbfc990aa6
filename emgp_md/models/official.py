"""Import the authors' released 3D-EMGP checkpoint (``checkpoint-3dmgp``) into our format.

The file is ``{"model": state_dict}`` of a DDP-wrapped ``EquivariantDenoisePred`` (docs/method.md §2.9):
``module.model.*`` is the EGNN (7 × 128), ``module.node_dec``/``module.graph_dec`` the pooled energy
head, ``module.noise_pred`` the INP head and ``module.sigmas`` the 50 noise levels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emgp_md.config import ModelConfig
from emgp_md.models import build_model
from emgp_md.models.checkpoint import make_metadata, safe_torch_load, save_checkpoint
from emgp_md.models.energy_model import EnergyModel

log = logging.getLogger(__name__)

_PREFIXES = {
    "module.model.": "backbone.",
    "module.node_dec.": "head.node_dec.",
    "module.graph_dec.": "head.graph_dec.",
    "module.noise_pred.": "noise_head.noise_pred.",
}


def _rename(key: str) -> str | None:
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def import_official(in_path: str | Path, out_path: str | Path | None = None) -> tuple[EnergyModel, dict[str, Any]]:
    """Convert the authors' checkpoint; optionally save it as an emgp-md checkpoint.

    Returns
    -------
    model : EnergyModel
        EGNN 7×128 with the pooled energy head and the 50-level INP head, eval mode.
    metadata : dict
        Energy unit ``"arbitrary"`` (a pretraining energy is not a physical energy), the noise
        levels in Å and the provenance.
    """
    in_path = Path(in_path)
    if not in_path.is_file():
        raise FileNotFoundError(f"official checkpoint {str(in_path)!r} does not exist")
    raw = safe_torch_load(in_path, what="official checkpoint")  # errors never suggest weights_only=False
    if not isinstance(raw, dict) or "model" not in raw:
        raise ValueError(f"{str(in_path)!r} is not a 3D-EMGP checkpoint (no 'model' state dict)")
    src = raw["model"]
    state, unused = {}, []
    for key, value in src.items():
        new = _rename(key)
        if new is None:
            unused.append(key)
        else:
            state[new] = value.float()
    sigmas = src.get("module.sigmas")
    if sigmas is None:
        raise ValueError(f"{str(in_path)!r} has no 'module.sigmas': not a 3D-EMGP pretraining checkpoint")
    width = state["backbone.embedding_in.weight"].shape[0]
    depth = len({k.split(".")[1] for k in state if k.startswith("backbone.gcl_")})
    cfg = ModelConfig(backbone="egnn", hidden_nf=width, n_layers=depth, head="pooled", noise_levels=int(sigmas.numel()))
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    if unused != ["module.sigmas"]:
        log.warning("ignored keys of the official checkpoint: %s", unused)
    meta = make_metadata(
        cfg,
        species=list(range(1, 100)),
        energy_unit="arbitrary",
        name="3d-emgp-official",
        kind="pretrained",
        sigmas_A=[float(s) for s in sigmas],
        provenance={
            "source": "jiaor17/3D-EMGP checkpoints/checkpoint-3dmgp (MIT licence)",
            "file": in_path.name,
            "note": "EGNN pretrained on GEOM-QM9 with Riemann EFP + INP; its energy is in arbitrary units",
        },
    )
    model.eval()
    if out_path is not None:
        save_checkpoint(out_path, model, meta)
        log.info("wrote %s", out_path)
    return model, meta
