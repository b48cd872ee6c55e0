"""Using a trained network, without Lightning: generation (used by the commands, the page, the callbacks and
the Python API), the sampling engine (``charlm sample``, ``--interactive``, the API), beam search, scoring,
neurons and their page, the export step."""
