"""Using a trained network, without Lightning: generation, the sampling engine (shared by ``charlm sample``,
``--interactive``, the page and the callbacks), beam search, scoring, neurons and their page, the export step."""
