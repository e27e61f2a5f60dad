"""Training: backbones and their initialisation (``models``), the paper's recipe (``recipe``), CV splits (``cv``),
fitting and prediction (``engine``), one model as an idempotent job (``jobs``) and the transfer-learning
experiments (``experiments``)."""
