"""studylib: a re-runnable study of deep transfer learning on area-preserving flat maps of the cortex.

Reproduces and tests "Deep transfer learning for cerebral cortex using area-preserving
geometry mapping" (Cerebral Cortex 32(14):2972-2984, 2022). Submodules are imported on
demand so that the command line stays fast.
"""

__version__ = "0.1.0"
