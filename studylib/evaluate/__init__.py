"""Evaluation: classification metrics (``metrics``), result tables per image, model and arm beside the paper
(``summaries``) and filter variation (``filters``); stacking, confidence intervals and paired tests come later."""
