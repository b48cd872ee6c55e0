"""One note on stderr per run, from its first process, also before the Trainer exists.

``python -m charlm fit`` prints some notes while the CLI builds the data module and the model (a
dataset read from the copy prepared before, a checkpoint's weights transplanted, a flag ignored): every
DDP process builds them, and one note is enough. Lightning's ``rank_zero_only.rank`` holds, before its
Trainer sets it, only what it read from the environment at import: RANK (torchrun), LOCAL_RANK (set by
Lightning's DDP launcher in each process it starts), SLURM_PROCID; under ddp_spawn the Trainer sets it
before setup. It does not read NODE_RANK: the first process of node 1 of a multi-node Lightning run has
no LOCAL_RANK, so it counts as rank 0 until its Trainer sets the rank; NODE_RANK is checked here for it.
"""

from __future__ import annotations

import os
import sys


def is_rank_zero() -> bool:
    """Whether this process is the first of its (DDP) run: global rank 0, on node 0."""
    from lightning.pytorch.utilities import rank_zero_only  # here: a download note must not load Lightning

    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def rank_zero_note(message: str) -> None:
    """Print ``message`` to stderr, from the first process of the run only."""
    if is_rank_zero():
        print(message, file=sys.stderr)
