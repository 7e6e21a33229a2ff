"""The network and its training in pure NumPy (no AWS import): layers, optimizers, mini-batches, shards, metrics,
the training configuration and its parameter table, data sets, and the diagnostics of a trained model."""
