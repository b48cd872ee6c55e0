"""``charlm serve``: the models in a browser — write with them, look inside them, compare them.

The pieces, one concern each: ``limits`` (what one request may ask for), ``body`` (a request's JSON read
and checked field by field: every refusal a 4xx naming the field), ``models`` (the checkpoints
chosen on the command line, by index), ``examples`` (each model's example prompts), ``guard`` (only this
server's own page may call it), ``writing`` (a sample streamed as charlm.infer.generate writes it),
``looking`` (neuron activations, top-5 guesses, surprise and saliency of a text), ``comparing``
(which model wrote this: classify's verdict with per-byte surprise), ``app`` (the Starlette routes;
the only module that imports the web libraries) and ``page/`` (the one HTML page, its script, style and
icon, served from memory: no path from a request is opened). The ``charlm serve`` function is
charlm.cli.commands.serve.
"""
