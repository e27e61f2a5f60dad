"""Baselines the flat-map CNNs are measured against (the linear reference first; PCA+SVM, slice, 3D-volume and
3D-mesh baselines join here)."""
