"""Training: fine-tuning on energies and forces, evaluation, resumable state."""
