"""Evaluation: classification metrics (``metrics``) and filter variation (``filters``); stacking, confidence
intervals and paired tests come later."""
