"""Flattening the fs_LR 32k and fsaverage5 template hemispheres: time per stage and the distortion targets of issue #4.

Targets: <= 15 s per 30k-vertex hemisphere on 2 cores (aim <= 5 s); 0 flipped triangles; triangle area ratio
p5-p95 within [0.9, 1.1]; MMP parcel ratio p5-p95 within [0.98, 1.02]; conformal mean |mu| <= 0.03.
"""

from __future__ import annotations

import resource

from studylib.data.templates import load_parcellation, load_template
from studylib.geometry.distortion import distortion_summary
from studylib.geometry.flatten import flatten


def main() -> None:
    for name in ("fs_LR_32k", "fsaverage5"):
        template = load_template(name)
        parcels = load_parcellation("mmp" if name == "fs_LR_32k" else "dk", name)
        for hemisphere in ("left", "right"):
            surface = template.surfaces[hemisphere]
            flat = flatten(surface.vertices, surface.faces, surface.cortex)
            kept = surface.vertices[flat.vertex_index]
            area = distortion_summary(kept, flat.faces, flat.uv, {"parcel": parcels.labels[hemisphere][flat.vertex_index]})
            conformal = distortion_summary(kept, flat.faces, flat.conformal_uv * [flat.report.aspect, 1.0])
            s = flat.report.summary()
            refine = f", refinement {s['refine_seconds']:.1f} s" if s["refined"] else ""
            print(f"{name} {hemisphere}: {s['vertices']} vertices; {s['seconds']:.1f} s total "
                  f"(conformal {s['conformal_seconds']:.1f} s / {s['conformal_iterations']} Newton iterations, "
                  f"{s['intrinsic_flips']} intrinsic flips; transport {s['transport_seconds']:.1f} s / "
                  f"{s['transport_iterations']} iterations{refine}; target <= 15 s)")
            print(f"  flipped {area['flipped']} (before repair {s['flipped_before_repair']}); triangle area ratio "
                  f"p5-p95 {area['area_ratio_p5']:.3f}-{area['area_ratio_p95']:.3f}; {parcels.name.upper()} parcel "
                  f"ratio p5-p95 {area['parcel_ratio_p5']:.4f}-{area['parcel_ratio_p95']:.4f}; conformal mean |mu| "
                  f"{conformal['mu_mean']:.4f}; area-preserving mean |mu| {area['mu_mean']:.3f}, "
                  f"median K {area['K_median']:.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
