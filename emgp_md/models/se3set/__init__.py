"""SE3Set hypergraph transformer (docs/architecture.md, "SE3Set").

- :mod:`~emgp_md.models.se3set.config`: presets and their resolution from a ``ModelConfig``.
- :mod:`~emgp_md.models.se3set.layers`: equivariant primitives.
- :mod:`~emgp_md.models.se3set.attention`: V2E/E2V attention and the block.
- :mod:`~emgp_md.models.se3set.model`: the network, :class:`SE3Set`.
- :mod:`~emgp_md.models.se3set.ops`, :mod:`~emgp_md.models.se3set.tp`: feature-major evaluation of
  the e3nn modules.
"""

from __future__ import annotations

from emgp_md.models.se3set.config import SE3SetSettings, se3set_model_config, settings_from_config
from emgp_md.models.se3set.model import SE3Set

__all__ = ["SE3Set", "SE3SetSettings", "se3set_model_config", "settings_from_config"]
