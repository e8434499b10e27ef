"""The model registry, where weights live (and their download), and the tiny test models.
No torch at import."""
