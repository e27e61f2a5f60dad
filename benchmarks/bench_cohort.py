"""Building a 1000-subject simulated cohort (fs_LR 32k, 4 metrics, 2 hemispheres): time and peak memory.

Target (issue #3): under 2 minutes and under 4 GB on 2 cores. Runs the build in a fresh process so that
its peak resident memory is its own, once with an empty eigenmode cache and once with it filled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from studylib.params import SimulatedCohortParams
    from studylib.data.build import simulate_cohort
    out, cache, data_dir = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] or None
    spec = SimulatedCohortParams(source="simulated", task="sex", n_subjects=1000, n_sites=1, template="fs_LR_32k",
                        metrics=["thickness", "sulc", "curvature", "myelin"])
    start = time.perf_counter()
    cohort = simulate_cohort(out, "bench", spec, seed=1, data_dir=Path(data_dir) if data_dir else None,
                             cache=cache, meta={"name": "bench"}, progress=False)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (out / "maps").glob("*.npy"))
    print(json.dumps({"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "subjects": len(cohort), "maps_gb": size / 2**30}))
""")


def main() -> None:
    data_dir = os.environ.get("STUDYLIB_DATA", "")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for label in ("cold (eigenmodes computed)", "warm (eigenmodes cached)"):
            out = Path(tmp) / label.split()[0]
            done = subprocess.run([sys.executable, "-c", CHILD, str(out), str(cache), data_dir],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            verdict = "OK" if result["seconds"] < 120 and result["peak_rss_gb"] < 4 else "MISSED"
            print(f"1000 subjects x 4 metrics x 2 hemispheres, {label}: {result['seconds']:.1f} s "
                  f"(target < 120 s), peak RSS {result['peak_rss_gb']:.2f} GB (target < 4 GB), "
                  f"maps on disk {result['maps_gb']:.2f} GB [{verdict}]")


if __name__ == "__main__":
    main()
