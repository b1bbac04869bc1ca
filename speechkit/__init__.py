"""speechkit: an open speech-AI toolkit.

``import speechkit`` is deliberately light: it defines the version and nothing else at import time.
Heavy dependencies (numba, lhotse, lightning, librosa) are imported by the submodules that need them,
so that the CLI's ``--help``, inference and tests of small parts start fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
