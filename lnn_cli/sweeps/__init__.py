"""Sweeps: many runs of one network with varied parameters (`lnn sweep`, `lnn local --sweep`)."""
