"""The image store: every cohort's maps rasterized per (hemisphere, metric), ready for training.

Layout of ``<store>/<cohort>/``::

    images/<hemisphere>_<metric>.npy   float32 or float16, subjects x H x W, memory-mapped
    subjects.csv                        the cohort's subjects table (row order of the images)
    store.json                          image size, dtype, flat maps used, per-(hemisphere, metric)
                                        mean and SD over all pixels of all subjects and the
                                        SHA-256 of the image file (what training-job keys cover)

The mean and SD describe the whole cohort; training code that must not look at test subjects
computes its own from the training folds (these are for display and sanity checks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.cohort import Cohort
from .flatmaps import SubjectRasterizers
from .geometry.flatten import FlatMap
from .hashing import file_sha256, sha256_json
from .raster import Rasterizer
from .storage import atomic_write_text, chunked_moments

__all__ = ["ImageStore", "build_image_store", "discard_store", "open_stores"]

CHUNK = 64


@dataclass(frozen=True)
class ImageStore:
    """A cohort's images on disk (see the module docstring)."""

    path: Path

    @property
    def meta(self) -> dict:
        return json.loads((Path(self.path) / "store.json").read_text())

    def images(self, hemisphere: str, metric: str) -> np.ndarray:
        """Subjects x H x W images, memory-mapped read-only."""
        path = Path(self.path) / "images" / f"{hemisphere}_{metric}.npy"
        if not path.is_file():
            raise KeyError(f"no {hemisphere} {metric} images in {self.path}")
        return np.load(path, mmap_mode="r")

    def group_difference(self, hemisphere: str, metric: str) -> np.ndarray:
        """Mean image of label 1 minus mean image of label 0, read in chunks of subjects (H x W, float64)."""
        images = self.images(hemisphere, metric)
        labels = self.subjects["label"].to_numpy()
        counts = {label: int((labels == label).sum()) for label in (0, 1)}
        if not all(counts.values()):
            raise ValueError(f"{self.path}: both labels are needed for a group difference, counts {counts}")
        means = [chunked_moments(images, np.flatnonzero(labels == label), axis=0)[0] for label in (0, 1)]
        return means[1] - means[0]

    def identity(self, hemisphere: str, metric: str) -> str:
        """Digest of one image set: size, method, dtype, its pixel statistics, the content hash of its images
        (recorded when the store was built) and the subjects table (the images' rows). Rebuilding other image
        sets does not change it; any change of its pixels does."""
        meta = self.meta
        key = f"{hemisphere}_{metric}"
        if key not in meta["stats"]:
            raise KeyError(f"no {hemisphere} {metric} images in {self.path}")
        described = {name: meta.get(name) for name in ("size", "method", "dtype")} | {
            "stats": meta["stats"][key], "sha256": meta.get("sha256", {}).get(key)}
        return sha256_json({"images": described, "subjects": (Path(self.path) / "subjects.csv").read_text()})

    @property
    def subjects(self):
        import pandas as pd

        return pd.read_csv(Path(self.path) / "subjects.csv", dtype={"subject": str})


def build_image_store(cohort: Cohort, flatmaps: Mapping[str, FlatMap | Sequence[FlatMap]], size: int,
                      out: str | Path, *, method: str = "barycentric", dtype: str = "float32") -> ImageStore:
    """Rasterize every map of ``cohort`` through the flat map of its hemisphere into ``out``.

    Parameters
    ----------
    cohort : Cohort
    flatmaps : dict
        ``{"left": FlatMap, "right": FlatMap}`` on the cohort's template, or per hemisphere a list of each subject's
        own map in the cohort's row order (``flatten.mode: per-subject``; recorded as ``flatten_mode`` in
        ``store.json``).
    size : int
        Image side in pixels.
    out : path
        Store folder for this cohort (replaced).
    method : {"barycentric", "paper-average"}
    dtype : {"float32", "float16"}
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    n = len(cohort)
    stats, digests = {}, {}
    per_subject = {hemisphere: not isinstance(flatmaps[hemisphere], FlatMap) for hemisphere in cohort.hemispheres}
    for hemisphere in cohort.hemispheres:
        if per_subject[hemisphere]:
            if len(flatmaps[hemisphere]) != n:
                raise ValueError(f"cohort {cohort.name}: {len(flatmaps[hemisphere])} {hemisphere} subject maps for "
                                 f"{n} subjects")
            own = SubjectRasterizers(flatmaps[hemisphere], size, method, keep=1)
            index = flatmaps[hemisphere][0].vertex_index
            if any(not np.array_equal(flat.vertex_index, index) for flat in flatmaps[hemisphere]):
                raise ValueError(f"cohort {cohort.name}: the {hemisphere} subject maps keep different vertices")
        else:
            flat = flatmaps[hemisphere]
            rasterizer = Rasterizer(flat.uv, flat.faces, size, method=method)
            index = flat.vertex_index
        targets = {metric: np.lib.format.open_memmap(out / "images" / f"{hemisphere}_{metric}.npy", mode="w+",
                                                     dtype=np.dtype(dtype), shape=(n, size, size))
                   for metric in cohort.metrics}
        for start in range(0, n, CHUNK):
            rows = np.arange(start, min(n, start + CHUNK))
            values = {}
            for metric in cohort.metrics:
                values[metric] = np.asarray(cohort.maps(hemisphere, metric)[start: start + CHUNK][:, index],
                                            dtype=np.float32)
                bad = ~np.isfinite(values[metric])
                if bad.any():
                    subjects = cohort.subjects["subject"].iloc[np.flatnonzero(bad.any(axis=1))[:5] + start].tolist()
                    raise ValueError(f"cohort {cohort.name}: {hemisphere} {metric} has NaN/inf on flat-map "
                                     f"vertices for subject(s) {subjects}")
            if per_subject[hemisphere]:
                for i, row in enumerate(rows):  # each subject's rasterizer built once for all its metrics
                    for metric in cohort.metrics:
                        targets[metric][row] = own[row].to_image(values[metric][i])
            else:
                for metric in cohort.metrics:
                    targets[metric][start: start + len(rows)] = rasterizer.to_image(values[metric])
        for metric, target in targets.items():
            target.flush()
            mean, sd, _ = chunked_moments(target, chunk=CHUNK)
            stats[f"{hemisphere}_{metric}"] = {"mean": mean, "sd": sd}
            digests[f"{hemisphere}_{metric}"] = file_sha256(out / "images" / f"{hemisphere}_{metric}.npy")
    cohort.subjects.to_csv(out / "subjects.csv", index=False)
    meta = {"cohort": cohort.name, "cohort_key": cohort.meta.get("build_key"), "template": cohort.template,
            "size": size, "method": method, "dtype": dtype, "subjects": n, "hemispheres": cohort.hemispheres, "metrics": cohort.metrics, "stats": stats,
            "sha256": digests, "flatten_mode": "per-subject" if any(per_subject.values()) else "template",
            "flatmaps": {h: sha256_json([flat.report.key for flat in flatmaps[h]]) if per_subject[h]
                         else flatmaps[h].report.key for h in cohort.hemispheres}}
    atomic_write_text(out / "store.json", json.dumps(meta, indent=2) + "\n")
    return ImageStore(out)


def open_stores(folders: Mapping[str, str | Path]) -> tuple[dict[str, ImageStore], list[str]]:
    """The image stores in ``folders`` (cohort name -> store folder), and the names without one (optional
    cohorts skipped upstream)."""
    found = {name: ImageStore(Path(folder)) for name, folder in folders.items()
             if (Path(folder) / "store.json").is_file()}
    return found, [name for name in folders if name not in found]


def discard_store(folder: str | Path) -> bool:
    """Remove an image store (that of a cohort skipped this run), so that no later step trains on its old images;
    return whether there was one."""
    import shutil

    folder = Path(folder)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True
