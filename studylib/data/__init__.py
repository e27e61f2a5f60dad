"""Cohorts: templates, readers of real data, simulated and semi-real cohorts."""
