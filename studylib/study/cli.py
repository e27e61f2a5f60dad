"""``studylib`` command line: run the study's notebooks, build its book, check parameter files.

Imports stay light until a command needs more, so that a bad parameter file
fails within a second.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import get_args

from ..params import ParamsError, PowerDiagram
from .config import load_params

__all__ = ["main"]


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, metavar="FILE", help="parameter set, e.g. params/default.yaml")
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="results root; the run writes to DIR/<params name>/ (default: results)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studylib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute the numbered notebooks with papermill")
    _add_params(run)
    run.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks, e.g. 02_flatten")
    run.add_argument("--force", action="store_true", help="re-run even notebooks whose inputs did not change")
    run.add_argument("--verbose", action="store_true", help="stream the notebooks' output")

    book = commands.add_parser("book", help="build the Jupyter Book HTML from a run's executed notebooks")
    _add_params(book)

    browse = commands.add_parser("check-book", help="open every page of a built book in headless Chromium: JavaScript "
                                                    "errors, missing images, empty figures, broken links, surface "
                                                    "viewers; screenshots under book/screenshots")
    _add_params(browse)

    cohort = commands.add_parser("cohort", help="cohorts: build those named in a parameter set")
    cohort_commands = cohort.add_subparsers(dest="cohort_command", required=True)
    build = cohort_commands.add_parser("build", help="build every cohort of the parameter set (unchanged ones are reused)")
    _add_params(build)
    build.add_argument("--only", nargs="+", metavar="COHORT", help="build only these cohorts")
    build.add_argument("--force", action="store_true", help="rebuild even unchanged cohorts")

    flat = commands.add_parser("flatten", help="map a hemisphere surface (medial wall removed) onto the unit square")
    flat.add_argument("surface", metavar="SURFACE", help="GIFTI .surf.gii or FreeSurfer geometry (lh.white, ...)")
    flat.add_argument("--cortex-mask", required=True, metavar="MASK",
                      help=".npy/.txt/.csv of 0/1 per vertex, or a FreeSurfer .label of cortex vertices")
    flat.add_argument("--out", required=True, metavar="MAP.npz", help="where to write uv, faces, vertex_index, corners")
    flat.add_argument("--conformal-only", action="store_true", help="stop after the conformal square map")
    flat.add_argument("--power-diagram", choices=get_args(PowerDiagram), default="qhull",
                      help="the transport's power diagrams: qhull (deterministic, default) or geogram (about as "
                           "fast, not bit-reproducible)")
    flat.add_argument("--json", action="store_true", help="print the distortion figures as JSON")

    fetch = commands.add_parser("fetch", help="download reference data (checksum-verified) into the data directory")
    fetch.add_argument("group", choices=["atlas", "abide1"], help="atlas: D-K labels; abide1: ABIDE I tables")
    fetch.add_argument("--data-dir", metavar="DIR", help="default: $STUDYLIB_DATA, else ~/studylib_data")

    check = commands.add_parser("params", help="validate parameter files and print the resolved values")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--quiet", action="store_true", help="only report problems")
    return parser


def _check_params(files: Sequence[str], quiet: bool) -> int:
    import yaml

    status = 0
    for file in files:
        try:
            params = load_params(file)
        except ParamsError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        if not quiet:
            print(f"# {file}: valid")
            print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return status


def duration(seconds: float) -> str:
    """``54 min 22 s``, ``38 s``: a run's wall time for people."""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``studylib`` console command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "params":
            return _check_params(args.files, args.quiet)
        if args.command == "run":
            from .runner import StageFailed, run_study

            started = time.perf_counter()
            try:
                report = run_study(args.params, results_root=args.results, only=args.only, force=args.force,
                                   verbose=args.verbose, echo=lambda line: print(line, flush=True))
            except StageFailed as failure:
                print(f"error: {failure}", file=sys.stderr)
                return 1
            print(f"done: {len(report.by_status('ran'))} ran, {len(report.by_status('skipped'))} skipped in "
                  f"{duration(time.perf_counter() - started)} (recorded in provenance.json)")
            return 0
        if args.command == "cohort":
            from ..data.build import build_cohorts
            from ..params import DataParams, resolve_data_dir
            from .config import absent_data_note, params_name
            from .layout import ResultsLayout

            params = load_params(args.params, schema=DataParams)
            layout = ResultsLayout.for_params(params_name(args.params), args.results)
            note = absent_data_note(params)
            if note:
                print(note, flush=True)
            for result in build_cohorts(params.cohorts, layout.cohorts, seed=params.seed,
                                        data_dir=resolve_data_dir(params), cache=layout.cohort_cache,
                                        only=args.only, force=args.force, echo=lambda line: print(line, flush=True)):
                if result.cohort is not None:
                    qc = len(result.cohort.qc)
                    print(f"  {result.name}: {len(result.cohort)} subjects, {qc} QC exclusion(s)")
            return 0
        if args.command == "flatten":
            import json

            from ..geometry.disk import DiskError
            from ..geometry.distortion import distortion_summary
            from ..geometry.flatten import flatten, load_mask, load_surface

            vertices, faces = load_surface(args.surface)
            mask = load_mask(args.cortex_mask, len(vertices))
            try:
                flat = flatten(vertices, faces, mask, area_preserving=not args.conformal_only,
                               power_diagram=args.power_diagram)
            except DiskError as error:
                print(f"error: {args.surface} with mask {args.cortex_mask}: {error}", file=sys.stderr)
                return 1
            out = flat.save(args.out)
            kept = vertices[flat.vertex_index]
            figures = {**distortion_summary(kept, flat.faces, flat.uv), "out": str(out), **flat.report.summary()}
            if args.json:
                print(json.dumps(figures, indent=2, default=float))
            else:
                print(f"{out}: {figures['vertices']} vertices, {figures['flipped']} flipped, triangle area "
                      f"ratio p5-p95 {figures['area_ratio_p5']:.3f}-{figures['area_ratio_p95']:.3f}, "
                      f"mean |mu| {figures['mu_mean']:.3f}, {figures['seconds']:.1f} s")
            return 0
        if args.command == "fetch":
            from pathlib import Path

            from ..params import resolve_data_dir
            from ..data.fetchers import FetchError, fetch_group

            data_dir = Path(args.data_dir) if args.data_dir else resolve_data_dir(create=True)
            try:
                for path in fetch_group(args.group, data_dir):
                    print(f"ok: {path}")
            except FetchError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            return 0
        if args.command == "book":
            from .book import BookError, build_book

            try:
                build_book(args.params, results_root=args.results, echo=lambda line: print(line, flush=True))
            except BookError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            return 0
        if args.command == "check-book":
            from .browser import BrowserMissing, check_book
            from .config import params_name
            from .layout import ResultsLayout

            load_params(args.params)
            layout = ResultsLayout.for_params(params_name(args.params), args.results)
            try:
                problems = check_book(layout.book / "_build" / "html", layout.book / "screenshots")
            except BrowserMissing as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            problems.to_csv(layout.book / "browser_check.csv", index=False)
            pages = len(list((layout.book / "screenshots").glob("*.png")))
            if len(problems):
                print(f"error: {len(problems)} problem(s) on {problems['page'].nunique()} of {pages} pages "
                      f"(all in {layout.book / 'browser_check.csv'}):", file=sys.stderr)
                for row in problems.head(30).itertuples():
                    print(f"  {row.page}: {row.kind}: {row.detail}", file=sys.stderr)
                return 1
            print(f"book checked in Chromium: {pages} pages, no problems; screenshots in {layout.book / 'screenshots'}")
            return 0
    except (ParamsError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
