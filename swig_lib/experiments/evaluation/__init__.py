"""Evaluation: per-subject metrics of the trained models, statistics and the Table III ranking, the ablation."""
