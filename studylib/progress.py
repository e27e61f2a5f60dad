"""Progress bars that belong in the terminal, not in the executed notebooks.

Every long loop of the package shows a tqdm bar made by :func:`progress_bar`. When the study runner executes a
notebook it sets ``STUDYLIB_PROGRESS=terminal`` for the kernel: the bars then go to the kernel process's own stderr
(the terminal that runs ``studylib run``) instead of the notebook, whose page keeps its one-line summaries; a
notebook opened interactively shows them in the cell as usual.
"""

from __future__ import annotations

import os
import sys

__all__ = ["PROGRESS_ENV", "progress_bar"]

#: Environment variable the runner sets for the kernels it starts: ``terminal`` sends bars to the process's stderr.
PROGRESS_ENV = "STUDYLIB_PROGRESS"


def progress_bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)``, on the terminal's stderr when :data:`PROGRESS_ENV` is ``terminal``."""
    from tqdm import tqdm

    if os.environ.get(PROGRESS_ENV) == "terminal" and "file" not in kwargs:
        kwargs["file"] = sys.__stderr__
    return tqdm(iterable, **kwargs)
