"""Fix-ups to a checkpoint's Lightning loop state, applied before Lightning restores its loops.

A validation interrupted midway (Ctrl-C, SIGTERM, a crash) cannot be resumed where it stopped:
charlm's evaluation streams always start at batch 0, and the partial sums of the bpc metric and
the evaluation hidden state are not in the checkpoint. Left alone, Lightning 2.6 either skips the
rest of that validation (when the interrupt came between two batches) or runs only the batches
its counter has left, from the start of the streams (when it came inside a step): a val/bpc of
the first few batches, and a "best" checkpoint named after it. So the validation is redone from
its first batch. And a checkpoint written between two training batches (Ctrl-C) would have every
later row logged one step late (``count_logged_steps_once``).

Lightning's levers (lightning/pytorch/loops/evaluation_loop.py and training_epoch_loop.py): when
the validation loop's ``total`` counters read ``started == ready``, ``processed == started - 1``,
``completed == processed``, it is "restarted mid-evaluation", and the epoch loop then runs that
validation before the next training batch; its ``current`` counters say where the batches resume.
The counters are reached through ``charlm.compat``, where their place in the checkpoint is tested.
"""

from __future__ import annotations

from typing import Any

from charlm.compat import logged_steps, set_logged_steps, train_batch_progress, val_batch_progress


def redo_interrupted_validation(checkpoint: dict[str, Any]) -> bool:
    """Rewrite ``checkpoint["loops"]`` in place so that a validation interrupted midway runs again
    from batch 0, and a finished one is never taken for an interrupted one. Returns whether a
    validation will be redone."""
    progress = val_batch_progress(checkpoint)
    if not progress:
        return False
    current, total = progress["current"], progress["total"]
    unfinished = checkpoint.get("charlm", {}).get("mid_validation", False) or (
        # what Lightning's own counters show (checkpoints from before charlm recorded it): a batch
        # begun but not completed, or some batches done and not the last
        current["ready"] > current["completed"] or (current["completed"] > 0 and not progress["is_last_batch"])
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


def count_logged_steps_once(checkpoint: dict[str, Any], accumulate_grad_batches: int = 1) -> bool:
    """Rewrite ``checkpoint["loops"]`` in place so that a run resumed from a checkpoint written
    between two training batches (Ctrl-C acts at a batch start; a crash inside a training step)
    logs its metrics at the steps an uninterrupted run would. Returns whether it changed anything.

    Lightning's logging step (``_batches_that_stepped``) counts optimizer steps and is incremented
    after each batch; on restart Lightning adds 1 more unless the training counters read "last batch
    completed", assuming the file was written before that increment (true of a checkpoint from
    ``on_train_batch_end`` or a validation). From a batch start it was already counted: resumed, every
    row would be logged one step late (the validation after step 30 as 30, not 29) and one training
    row skipped. So the count is lowered by the 1 that Lightning adds.
    """
    progress, steps = train_batch_progress(checkpoint), logged_steps(checkpoint)
    if not progress or not steps:
        return False
    total, current = progress["total"], progress["current"]
    batch_undone = total["ready"] > total["completed"] and total["processed"] == total["completed"]
    # Lightning's increment on restart, TrainingEpochLoop.reset: when the batch in hand would step the optimizer
    steps_now = current["ready"] % max(1, accumulate_grad_batches) == 0 or progress.get("is_last_batch", False)
    if not (batch_undone and steps_now):
        return False
    set_logged_steps(checkpoint, steps - 1)
    return True
