"""Files on disk: atomic writes (the one writer charlm uses for every file it replaces), downloads, the cache of
prepared token files with their vocabulary."""
