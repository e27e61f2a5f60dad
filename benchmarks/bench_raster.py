"""Rasterising vertex-wise maps into 224 x 224 images (``studylib.raster.Rasterizer``): time and memory.

Mesh: about 30,000 vertices filling the unit square (Delaunay triangulation of seeded random points plus
evenly spaced points on the four sides), the size of one fs_LR 32k hemisphere.
Targets: building the operators at 224 x 224 in <= 1 s; ``to_image`` on a batch of 256 float32 maps at
>= 2000 images/s on 2 cores. Also printed: a naive numpy gather (3 vertices x weights per pixel) for
comparison, ``to_vertices`` on the same batch, and peak resident memory.
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np
from scipy.spatial import Delaunay

from studylib.raster import Rasterizer

N_VERTICES = 30_000
SIZE = 224
BATCH = 256


def square_mesh(n_vertices: int = N_VERTICES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Delaunay triangulation of the unit square: ``4 * sqrt(n)`` points on the sides, the rest random inside."""
    per_side = int(np.sqrt(n_vertices))
    t = np.linspace(0.0, 1.0, per_side + 1)[:-1]
    sides = np.concatenate([np.column_stack([t, 0 * t]), np.column_stack([1 + 0 * t, t]),
                            np.column_stack([1 - t, 1 + 0 * t]), np.column_stack([0 * t, 1 - t])])
    inside = np.random.default_rng(seed).uniform(0.001, 0.999, (n_vertices - len(sides), 2))
    uv = np.concatenate([sides, inside])
    faces = Delaunay(uv).simplices.astype(np.int64)
    return uv, faces


def best_of(repeats: int, function) -> tuple[float, float]:
    """(fastest, median) wall time of ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    uv, faces = square_mesh()
    print(f"mesh: {len(uv)} vertices, {len(faces)} triangles; image {SIZE} x {SIZE}; {cores} cores")

    builds = []
    for _ in range(3):
        start = time.perf_counter()
        raster = Rasterizer(uv, faces, SIZE)
        builds.append(time.perf_counter() - start)
    verdict = "OK" if min(builds) <= 1.0 else "MISSED"
    print(f"build (forward + inverse operators): first {builds[0]:.3f} s, best {min(builds):.3f} s "
          f"(target <= 1 s) [{verdict}]")
    print(f"  operator nnz {raster.operator.nnz}, inverse nnz {raster.inverse_operator.nnz}, pixels outside "
          f"every triangle {int(raster.pixel_outside.sum())}, vertices sampled bilinearly "
          f"{int(raster.vertex_fallback.sum())}")
    start = time.perf_counter()
    Rasterizer(uv, faces, SIZE, method="paper-average")
    print(f"build paper-average: {time.perf_counter() - start:.3f} s")
    print(f"peak RSS after building: {peak_mb():.0f} MB")

    values = np.random.default_rng(1).standard_normal((BATCH, len(uv))).astype(np.float32)
    fast, median = best_of(5, lambda: raster.to_image(values))
    rate = BATCH / fast
    verdict = "OK" if rate >= 2000 else "MISSED"
    print(f"to_image, {BATCH} float32 maps: {rate:.0f} images/s best, {BATCH / median:.0f} median "
          f"(target >= 2000) [{verdict}]")
    print(f"peak RSS after to_image: {peak_mb():.0f} MB (batch of {BATCH} maps {values.nbytes / 2**20:.0f} MB, "
          f"images {BATCH * SIZE * SIZE * 4 / 2**20:.0f} MB)")

    index = faces[raster.pixel_triangle]  # (pixels, 3)
    weights = raster.pixel_barycentric.astype(np.float32)

    def gather():
        return np.einsum("kpj,pj->kp", values[:, index], weights).reshape(BATCH, SIZE, SIZE)

    naive_fast, _ = best_of(3, gather)
    difference = float(abs(gather() - raster.to_image(values)).max())
    print(f"naive gather (values[:, idx] * w): {BATCH / naive_fast:.0f} images/s; sparse / naive = "
          f"{naive_fast / fast:.1f}x (max difference {difference:.1e})")

    images = raster.to_image(values)
    back_fast, _ = best_of(3, lambda: raster.to_vertices(images))
    print(f"to_vertices, {BATCH} float32 images: {BATCH / back_fast:.0f} images/s")

    print(f"peak RSS at the end (the naive gather's (256, pixels, 3) temporary included): {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
