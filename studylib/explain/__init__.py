"""Explaining trained models: occlusion maps, their back-projection to the cortex and their recovery of planted truth."""
