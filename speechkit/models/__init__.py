"""LightningModules (training only): thin wrappers that build a network from :mod:`speechkit.modules` and define the
training and validation steps. Inference never imports this package (it imports Lightning).
"""

from speechkit.models.asr import ASRLightningModule, OptimConfig

__all__ = ["ASRLightningModule", "OptimConfig"]
