"""The package version: the one place it is written (``pyproject.toml`` reads it from here).

Reading it from the installed metadata (``importlib.metadata``) would cost ``import pos3`` tens
of milliseconds.
"""

__version__ = "1.0.0.dev0"
