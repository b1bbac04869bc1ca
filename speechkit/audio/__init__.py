"""Audio: loading and resampling (``io``), the log-mel front end (``features``) and augmentation (``augment``).

Submodules are imported on use so that ``import speechkit.audio`` stays light.
"""
