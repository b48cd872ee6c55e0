"""One module per command: ``fit`` / ``validate`` / ``test`` (LightningCLI, fit.py), and the commands that need
only a checkpoint, each a typed function whose docstring is its ``--help``."""
