"""Measurements on models and their training: usable on any model, not tied to one chapter."""

from .ntk import empirical_ntk, kernel_regression

__all__ = ["empirical_ntk", "kernel_regression"]
