"""Metrics: the ILSVRC localisation evaluator and confidence intervals."""
