"""Measurements on models and their training: usable on any model, not tied to one chapter."""

__all__: list[str] = []
