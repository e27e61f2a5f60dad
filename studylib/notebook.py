"""What every numbered notebook calls first, and how it saves what it shows.

A notebook's ``parameters`` cell holds ``params_file`` and ``results_dir``
(papermill overrides both); its next cell is::

    from studylib.notebook import start_stage
    stage = start_stage("02_flatten", params_file, results_dir)

``stage.params`` is the validated parameter set; ``stage.save_table`` and
``stage.save_figure`` write under ``results/<name>/tables|figures/<stage>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import StudyParams, load_params
from .layout import ResultsLayout

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["StageContext", "start_stage"]

#: Fixed SVG element ids and no timestamps, so re-running a notebook writes identical figure files.
_DETERMINISTIC_SVG = {"svg.hashsalt": "studylib"}


@dataclass(frozen=True)
class StageContext:
    """One notebook's parameters, random generator and output folders."""

    name: str
    params: StudyParams
    params_file: Path
    layout: ResultsLayout

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


def start_stage(name: str, params_file: str | Path, results_dir: str | Path) -> StageContext:
    """Load and validate the parameters and prepare the output folders of stage ``name``.

    Parameters
    ----------
    name : str
        The notebook's stage name, e.g. ``"01_preprocess"``.
    params_file : str or Path
        Parameter file injected by the runner (or chosen by hand when run interactively).
    results_dir : str or Path
        ``results/<params name>``; injected by the runner.
    """
    import warnings

    from tqdm import TqdmWarning

    # libraries that import tqdm.auto warn in kernels without ipywidgets; progress is printed as text instead
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    params_file = Path(params_file).resolve()
    context = StageContext(name, load_params(params_file), params_file, ResultsLayout(Path(results_dir).resolve()))
    for folder in (context.tables_dir, context.figures_dir, context.artifacts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return context
