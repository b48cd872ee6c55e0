"""charlm's version: one place, read by pyproject.toml, ``charlm.__version__`` and the files charlm writes."""

__version__ = "0.2.0"
