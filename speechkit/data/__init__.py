"""Data: NeMo manifests <-> Lhotse cuts (``manifests``) and the corpus preparers that ``speechkit prepare`` runs.

Submodules import lhotse; this package file does not.
"""
