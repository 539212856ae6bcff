"""Closed forms the chapters compare against. Numpy in, numpy out; no torch needed."""

from .saxe import saxe_growing_strength, saxe_half_time, saxe_mode_strength

__all__ = ["saxe_mode_strength", "saxe_half_time", "saxe_growing_strength"]
