"""``emgp-md learn``: sampling, labelling and committee active learning for a new molecule (library level)."""
