"""Data layer: featurisation, frozen topology, batched graphs and datasets."""
