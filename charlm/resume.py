"""Fix-ups to a checkpoint's Lightning loop state, applied before Lightning restores its loops.

A validation interrupted midway (Ctrl-C, SIGTERM, a crash) cannot be resumed where it stopped:
charlm's evaluation streams always start at batch 0, and the partial sums of the bpc metric and
the evaluation hidden state are not in the checkpoint. Left alone, Lightning 2.6 either skips the
rest of that validation (when the interrupt came between two batches) or runs only the batches
its counter has left, from the start of the streams (when it came inside a step): a val/bpc of
the first few batches, and a "best" checkpoint named after it. So the validation is redone from
its first batch.

Lightning's levers (lightning/pytorch/loops/evaluation_loop.py and training_epoch_loop.py): when
the validation loop's ``total`` counters read ``started == ready``, ``processed == started - 1``,
``completed == processed``, it is "restarted mid-evaluation", and the epoch loop then runs that
validation before the next training batch; its ``current`` counters say where the batches resume.
"""

from __future__ import annotations

from typing import Any

VAL_PROGRESS = "epoch_loop.val_loop.batch_progress"


def redo_interrupted_validation(checkpoint: dict[str, Any]) -> bool:
    """Rewrite ``checkpoint["loops"]`` in place so that a validation interrupted midway runs again
    from batch 0, and a finished one is never taken for an interrupted one. Returns whether a
    validation will be redone."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get(VAL_PROGRESS)
    if not progress:
        return False
    current, total = progress["current"], progress["total"]
    unfinished = checkpoint.get("charlm", {}).get("mid_validation", False) or (
        # what Lightning's own counters show (checkpoints from before charlm recorded it): a batch
        # begun but not completed, or some batches done and not the last
        current["ready"] > current["completed"] or (0 < current["completed"] and not progress["is_last_batch"])
    )
    earlier = total["completed"] - current["completed"]  # batches of this epoch's previous validations
    if unfinished:
        progress["current"] = {"ready": 0, "started": 0, "processed": 0, "completed": 0}
        progress["total"] = {"ready": earlier + 1, "started": earlier + 1, "processed": earlier, "completed": earlier}
        progress["is_last_batch"] = False
    else:
        # Lightning leaves total.ready/started one ahead after its own mid-evaluation restart, and a
        # later checkpoint would then look interrupted mid-validation: make the totals agree
        done = total["completed"]
        progress["total"] = {"ready": done, "started": done, "processed": done, "completed": done}
    return unfinished
