"""Geometry of cortical meshes: disk preparation, conformal and area-preserving maps, distortion."""
