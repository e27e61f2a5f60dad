"""Evaluation: classification metrics (stacking, confidence intervals and paired tests come later)."""
