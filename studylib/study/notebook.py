"""What every numbered notebook calls first, and how it saves what it shows.

A notebook's ``parameters`` cell holds ``params_file`` and ``results_dir``
(papermill overrides both); its next cell is::

    from studylib.study.notebook import start_stage
    stage = start_stage("02_flatten", params_file, results_dir)

``stage.params`` holds the parameter sections the stage declares in
:mod:`studylib.study.stages` and nothing else: reading another section raises
:class:`UndeclaredParams`, so that the runner's fingerprint (which covers exactly
the declared sections) can never miss an input. ``stage.layout`` names every file
that passes between notebooks; ``stage.save_table`` and ``stage.save_figure``
write under ``results/<name>/tables|figures/<stage>/``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..params import StudyParams, resolve_data_dir
from .config import load_params
from .layout import ResultsLayout
from .stages import STAGES, Stage

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["StageContext", "StageParams", "UndeclaredParams", "start_stage"]

#: Fixed SVG element ids and no timestamps, so re-running a notebook writes identical figure files.
_DETERMINISTIC_SVG = {"svg.hashsalt": "studylib"}


class UndeclaredParams(RuntimeError):
    """A notebook read a parameter section that its stage does not declare."""


class StageParams:
    """The sections of a :class:`~studylib.params.StudyParams` that one stage declares, read the same way
    (``params.train.epochs``); any other section raises :class:`UndeclaredParams`."""

    def __init__(self, params: StudyParams, stage: Stage):
        unknown = [key for key in stage.params if key not in type(params).model_fields]
        if unknown:
            raise ValueError(f"stage {stage.name} declares unknown parameter section(s) {', '.join(unknown)}")
        self._params = params
        self._stage = stage

    @property
    def declared(self) -> tuple[str, ...]:
        return self._stage.params

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in type(self._params).model_fields:
            raise AttributeError(f"parameters have no section {key!r}")
        if key not in self._stage.params:
            raise UndeclaredParams(
                f"notebook {self._stage.name} reads params.{key}, which its stage does not declare (declared: "
                f"{', '.join(self._stage.params) or 'none'}). Add {key!r} to the stage's params in "
                "studylib/study/stages.py, so that a change to it re-runs the notebook.")
        return getattr(self._params, key)

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={getattr(self._params, key)!r}" for key in self._stage.params)
        return f"StageParams({self._stage.name}: {shown})"


@functools.cache
def _itables_offline() -> None:
    """Embed itables' JavaScript in the notebook, once per kernel (the book then works without a CDN)."""
    import itables

    itables.init_notebook_mode(all_interactive=False, connected=False)


@dataclass(frozen=True)
class StageContext:
    """One notebook's declared parameters, its results layout and its output folders."""

    name: str
    params: StageParams
    params_file: Path
    layout: ResultsLayout

    @property
    def data_dir(self) -> Path:
        """The data directory (``params.data_dir``, else ``$STUDYLIB_DATA``, else ``~/studylib_data``); the stage
        must declare ``data_dir``."""
        return resolve_data_dir(self.params)

    @property
    def tables_dir(self) -> Path:
        return self.layout.tables(self.name)

    @property
    def figures_dir(self) -> Path:
        return self.layout.figures(self.name)

    @property
    def artifacts_dir(self) -> Path:
        return self.layout.artifacts(self.name)

    def save_table(self, table: pd.DataFrame, name: str, *, index: bool = False) -> Path:
        """Write ``table`` as ``tables/<stage>/<name>.csv`` and return the path."""
        path = self.tables_dir / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=index)
        return path

    def save_figure(self, figure: Figure, name: str, *, show: bool = True) -> list[Path]:
        """Write ``figure`` as ``figures/<stage>/<name>.png`` and ``.svg`` and return both paths.

        With ``show`` (in a notebook) the saved PNG is displayed and the figure closed, so it is
        rendered once rather than again by the inline backend.
        """
        import matplotlib as mpl
        import matplotlib.pyplot as plt

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        paths = [self.figures_dir / f"{name}.png", self.figures_dir / f"{name}.svg"]
        with mpl.rc_context(_DETERMINISTIC_SVG):
            figure.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
            figure.savefig(paths[1], bbox_inches="tight", metadata={"Date": None, "Creator": None})
        if show:
            plt.close(figure)
            try:
                from IPython.display import Image, display
            except ImportError:  # pragma: no cover - IPython ships with the notebook stack
                return paths
            display(Image(filename=str(paths[0])))
        return paths


    def show_table(self, table: pd.DataFrame, *, caption: str | None = None) -> None:
        """A long table as a sortable, searchable table (itables, with its JavaScript embedded in the page so that
        the book works offline, without a CDN)."""
        import itables

        _itables_offline()
        itables.show(table, caption=caption, pageLength=25, maxBytes=0)

    def show_notes(self, notes, *, empty: str = "") -> None:
        """Show notes as a bulleted list that wraps on the page (printed lines would scroll sideways in the book);
        ``empty`` is shown when there are none."""
        lines = [str(note) for note in notes] or ([empty] if empty else [])
        if not lines:
            return
        try:
            from IPython import get_ipython
            from IPython.display import Markdown, display
        except ImportError:  # pragma: no cover - IPython ships with the notebook stack
            get_ipython = None
        if get_ipython is None or get_ipython() is None:  # plain Python: text
            print("\n".join(lines))
            return
        display(Markdown("\n".join(f"- {line}" for line in lines)))


def start_stage(name: str | Stage, params_file: str | Path, results_dir: str | Path) -> StageContext:
    """Load and validate the parameters and prepare the output folders of stage ``name``.

    Parameters
    ----------
    name : str or Stage
        The notebook's stage name in :data:`~studylib.study.stages.STAGES`, e.g. ``"01_preprocess"``, or a
        :class:`~studylib.study.stages.Stage` (notebooks of another registry).
    params_file : str or Path
        Parameter file injected by the runner (or chosen by hand when run interactively).
    results_dir : str or Path
        ``results/<params name>``; injected by the runner.
    """
    import warnings

    from tqdm import TqdmWarning

    # libraries that import tqdm.auto warn in kernels without ipywidgets; progress is printed as text instead
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    if isinstance(name, Stage):
        stage = name
    else:
        known = {s.name: s for s in STAGES}
        if name not in known:
            raise ValueError(f"unknown stage {name!r}; stages are {', '.join(known)}")
        stage = known[name]
    params_file = Path(params_file).resolve()
    context = StageContext(stage.name, StageParams(load_params(params_file), stage), params_file,
                           ResultsLayout(Path(results_dir).resolve()))
    for folder in (context.tables_dir, context.figures_dir, context.artifacts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return context
