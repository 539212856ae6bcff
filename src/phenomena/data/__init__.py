"""Data made on the fly (or shipped inside a package): nothing downloads at run time."""

from .linear import whitened_inputs, linear_target

__all__ = ["whitened_inputs", "linear_target"]
