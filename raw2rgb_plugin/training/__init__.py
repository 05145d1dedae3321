"""Fitting G1 (with G2 and D) on RAW/RGB pairs: data, losses, the trainer, evaluation."""
