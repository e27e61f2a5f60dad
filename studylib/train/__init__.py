"""Training: backbones and their initialisation, the paper's recipe (mix-up, learning-rate schedule), CV splits."""
