"""SE3Set sizes: named presets, overrides, and their resolution from a :class:`ModelConfig`.

An SE3Set backbone is described by :class:`SE3SetSettings`. A :class:`~emgp_md.config.ModelConfig`
with ``backbone: se3set`` selects them with two keys:

- ``se3set_preset``: a name in :data:`PRESETS` (``"md17"``: the authors' MD17 aspirin template;
  ``"cpu_small"``: a 3-block CPU model; ``"tiny"``: for tests and smoke runs);
- ``se3set_overrides``: a mapping of :class:`SE3SetSettings` fields that replace the preset's.

Override order: preset, then ``se3set_overrides``. The generic size fields of ``ModelConfig``
(``hidden_nf``, ``n_layers``, ``n_rbf``, ``n_heads``, ``cutoff_A``) are **not** an input for
SE3Set: each must keep its ``ModelConfig`` default or equal the resolved value (``feature_nf``,
``n_blocks``, ``n_rbf``, ``n_heads``, ``cutoff_A``), so that a size never silently does nothing.
:func:`se3set_model_config` writes the resolved values into them, so that checkpoints and reports
show the real sizes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from e3nn import o3

from emgp_md.config import ModelConfig
from emgp_md.models.se3set.layers import sort_even_first

#: Elements with covalent radii in the authors' fragmenter (H, Li, B, C, N, O, F, Si, P, S, Cl, As,
#: Se, Br, Te, I): every molecule that can be fragmented can be embedded.
FRAGMENTER_ELEMENTS = (1, 3, 5, 6, 7, 8, 9, 14, 15, 16, 17, 33, 34, 35, 52, 53)


@dataclass(frozen=True)
class SE3SetSettings:
    """Architecture of an SE3Set backbone (defaults: the authors' MD17 aspirin template).

    Attributes
    ----------
    irreps_node : str
        ``V``: atom and anchored-hyperedge features (sorted, even parity first, ``0e`` present).
        Its ``l_max`` sets the spherical harmonics ``0e + 1o + 2e + …``.
    irreps_head : str
        One attention head (sorted, simplified, with ``0e`` channels for the logits).
    n_heads : int
        Attention heads.
    irreps_mlp_mid : str
        Middle of the feed-forward networks.
    n_blocks : int
        Transformer blocks.
    feature_nf : int
        Width of the invariant atom features after the last block (``feature_nf × 0e``), i.e. the
        ``hidden_nf`` the energy head sees.
    n_rbf : int
        Exp-normal radial basis functions.
    radial_hidden : tuple of int
        Hidden widths of the radial networks.
    cutoff_A : float
        Radius where the radial basis and its slope reach 0, Å. The authors use the largest
        atom–anchor distance of the data set (9 Å for aspirin); longer incidences still pass
        messages, with a distance-independent weight (smooth: value and slope match at r_c).
    avg_node_degree, avg_hyperedge_degree : float
        Normalisers ``d̄_V`` (anchored hyperedges per atom) and ``d̄_E`` (incidences per anchored
        hyperedge) of the degree embeddings (aspirin: 2.619 and 14.96).
    elements : tuple of int
        Atomic numbers of the one-hot atom embedding.
    fragmentation : str
        Fragmenter preset (:data:`emgp_md.data.fragment.PRESETS`) used when a hypergraph has to be
        built for this model.
    """

    irreps_node: str = "128x0e+64x1o+32x2e"
    irreps_head: str = "32x0e+16x1o+8x2e"
    n_heads: int = 4
    irreps_mlp_mid: str = "384x0e+192x1o+96x2e"
    n_blocks: int = 6
    feature_nf: int = 512
    n_rbf: int = 32
    radial_hidden: tuple[int, ...] = (64, 64)
    cutoff_A: float = 9.0
    avg_node_degree: float = 2.619
    avg_hyperedge_degree: float = 14.96
    elements: tuple[int, ...] = FRAGMENTER_ELEMENTS
    fragmentation: str = "md17"

    def __post_init__(self) -> None:
        object.__setattr__(self, "radial_hidden", tuple(int(v) for v in self.radial_hidden))
        object.__setattr__(self, "elements", tuple(sorted({int(v) for v in self.elements})))
        for name in ("irreps_node", "irreps_head", "irreps_mlp_mid"):
            irreps = o3.Irreps(getattr(self, name))
            if irreps.count("0e") == 0:
                raise ValueError(f"SE3Set {name} needs 0e channels, got {irreps}")
            if name != "irreps_mlp_mid" and irreps != sort_even_first(irreps)[0].simplify():
                raise ValueError(f"SE3Set {name} must be sorted and simplified, got {irreps}")
        positive = {
            "n_heads": self.n_heads,
            "n_blocks": self.n_blocks,
            "feature_nf": self.feature_nf,
            "n_rbf": self.n_rbf,
            "cutoff_A": self.cutoff_A,
            "avg_node_degree": self.avg_node_degree,
            "avg_hyperedge_degree": self.avg_hyperedge_degree,
        }
        bad = {k: v for k, v in positive.items() if not v > 0}
        if bad or not self.elements or min(self.elements) < 1:
            raise ValueError(
                f"SE3Set settings must be positive (got {bad}) with atomic numbers >= 1 "
                f"(got elements={list(self.elements)})"
            )
        from emgp_md.data.fragment import PRESETS as FRAGMENT_PRESETS

        if self.fragmentation not in FRAGMENT_PRESETS:
            raise ValueError(f"unknown fragmentation {self.fragmentation!r}; available: {sorted(FRAGMENT_PRESETS)}")


#: Named SE3Set architectures. ``md17``: the authors' MD17 template (``train_config/md17``);
#: ``cpu_small``: 3 blocks of 64x0e+32x1o+16x2e, 128 invariant features; ``tiny``: tests.
PRESETS: dict[str, SE3SetSettings] = {
    "md17": SE3SetSettings(),
    "cpu_small": SE3SetSettings(
        irreps_node="64x0e+32x1o+16x2e",
        irreps_head="16x0e+8x1o+4x2e",
        n_heads=4,
        irreps_mlp_mid="192x0e+96x1o+48x2e",
        n_blocks=3,
        feature_nf=128,
    ),
    "tiny": SE3SetSettings(
        irreps_node="8x0e+4x1o+2x2e",
        irreps_head="4x0e+2x1o+1x2e",
        n_heads=2,
        irreps_mlp_mid="16x0e+8x1o+4x2e",
        n_blocks=2,
        feature_nf=16,
        n_rbf=8,
        radial_hidden=(16,),
    ),
}

# ModelConfig field -> SE3SetSettings field that it must agree with
_GENERIC = {
    "hidden_nf": "feature_nf",
    "n_layers": "n_blocks",
    "n_rbf": "n_rbf",
    "n_heads": "n_heads",
    "cutoff_A": "cutoff_A",
}


def resolve_settings(preset: str, overrides: dict[str, Any] | None = None) -> SE3SetSettings:
    """Preset ``preset`` with ``overrides`` (SE3SetSettings fields) applied.

    Raises
    ------
    ValueError
        Unknown preset or override key (named), or invalid resulting settings.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown se3set_preset {preset!r}; available: {sorted(PRESETS)}")
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(SE3SetSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown se3set_overrides key(s) {unknown}; known keys are {sorted(known)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def settings_from_config(cfg: ModelConfig) -> SE3SetSettings:
    """SE3Set settings of a model configuration, checked against its generic size fields.

    Raises
    ------
    ValueError
        A generic size field that is neither its ``ModelConfig`` default nor the resolved value.
    """
    settings = resolve_settings(cfg.se3set_preset, cfg.se3set_overrides)
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    conflicts = [
        f"{name}={getattr(cfg, name)!r} (the preset gives {field}={getattr(settings, field)!r})"
        for name, field in _GENERIC.items()
        if getattr(cfg, name) != defaults[name] and getattr(cfg, name) != getattr(settings, field)
    ]
    if conflicts:
        raise ValueError(
            f"SE3Set takes its sizes from se3set_preset={cfg.se3set_preset!r} and se3set_overrides, "
            f"but the config sets {', '.join(conflicts)}; change them through se3set_overrides "
            f"(keys {sorted(_GENERIC.values())}) or leave the generic fields at their defaults"
        )
    return settings


def se3set_model_config(preset: str = "md17", overrides: dict[str, Any] | None = None, **fields: Any) -> ModelConfig:
    """A complete ``ModelConfig`` for SE3Set whose generic size fields hold the resolved sizes.

    Parameters
    ----------
    preset : str
        Name in :data:`PRESETS`.
    overrides : dict, optional
        :class:`SE3SetSettings` fields replacing the preset's.
    **fields
        Other ``ModelConfig`` fields (``head``, ``noise_levels``, ...).
    """
    cfg = ModelConfig(backbone="se3set", se3set_preset=preset, se3set_overrides=overrides, **fields)
    s = settings_from_config(cfg)
    return dataclasses.replace(
        cfg, hidden_nf=s.feature_nf, n_layers=s.n_blocks, n_rbf=s.n_rbf, n_heads=s.n_heads, cutoff_A=s.cutoff_A
    )
