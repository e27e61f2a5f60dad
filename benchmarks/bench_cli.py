"""Command-line latency: a bad parameter file must fail in under 2 s; an unchanged study must skip quickly.

Prints the median wall time of `studylib run --params BAD.yaml` (target < 2 s) and of a second
`studylib run` over the smoke parameters when every notebook is unchanged (all skipped).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
STUDYLIB = [sys.executable, "-m", "studylib.study.cli"]


def wall(command: list[str], repeats: int) -> tuple[float, subprocess.CompletedProcess]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
        times.append(time.perf_counter() - start)
    return statistics.median(times), done


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(f"extends: {PROJECT / 'params' / 'smoke'}\ntrain:\n  epochz: 3\n  batch_size: lots\n")
        seconds, done = wall([*STUDYLIB, "run", "--params", str(bad), "--results", tmp], repeats=5)
        assert done.returncode == 2 and "epochz" in done.stderr, done.stderr
        print(f"bad params file -> error: {seconds:.2f} s median of 5 (target < 2 s; {'OK' if seconds < 2 else 'SLOW'})")

        results = Path(tmp) / "results"
        smoke = str(PROJECT / "params" / "smoke.yaml")
        first, done = wall([*STUDYLIB, "run", "--params", smoke, "--results", str(results)], repeats=1)
        assert done.returncode == 0, done.stderr
        again, done = wall([*STUDYLIB, "run", "--params", smoke, "--results", str(results)], repeats=3)
        assert "done: 0 ran, 9 skipped" in done.stdout, done.stdout
        print(f"smoke study, first run: {first:.1f} s; unchanged re-run (all skipped): {again:.2f} s median of 3 "
              f"(ratio {again / first:.3f})")


if __name__ == "__main__":
    main()
