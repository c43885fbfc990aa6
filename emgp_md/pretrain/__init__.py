"""3D-EMGP pretraining pieces: noise levels, perturbations and force targets."""
