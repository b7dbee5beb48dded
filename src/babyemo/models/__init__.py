"""The model registry: architectures by name, and trained models by name."""
