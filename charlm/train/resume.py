"""Fix-ups to a checkpoint's Lightning loop state, applied before Lightning restores its loops.

A validation interrupted midway (Ctrl-C, SIGTERM, a crash) cannot be resumed where it stopped:
charlm's evaluation streams always start at batch 0, and the partial sums of the bpc metric and
the evaluation hidden state are not in the checkpoint. Left alone, Lightning 2.6 either skips the
rest of that validation (when the interrupt came between two batches) or runs only the batches
its counter has left, from the start of the streams (when it came inside a step): a val/bpc of
the first few batches, and a "best" checkpoint named after it. So the validation is redone from
its first batch. And a checkpoint written between two training batches (Ctrl-C) would have every
later row logged one step late (``count_logged_steps_once``), as would one written by SIGTERM after a
validation (``count_validated_step_once``); one written by SIGTERM between two epochs would resume into
an empty epoch (``start_the_next_epoch``).

Lightning's levers (lightning/pytorch/loops/evaluation_loop.py and training_epoch_loop.py): when
the validation loop's ``total`` counters read ``started == ready``, ``processed == started - 1``,
``completed == processed``, it is "restarted mid-evaluation", and the epoch loop then runs that
validation before the next training batch; its ``current`` counters say where the batches resume.
The counters are reached through ``charlm.compat``, where their place in the checkpoint is tested.
"""

from __future__ import annotations

from typing import Any

from charlm.compat import (
    epoch_progress,
    logged_steps,
    per_epoch_counters,
    set_logged_steps,
    train_batch_progress,
    val_batch_progress,
)


def fix_loop_state(checkpoint: dict[str, Any], accumulate_grad_batches: int = 1) -> None:
    """Every fix-up of this module, in the order they depend on each other, applied to ``checkpoint``
    in place (``CharLM.on_load_checkpoint``, before Lightning restores its loops from it)."""
    redo_interrupted_validation(checkpoint)
    count_validated_step_once(checkpoint, accumulate_grad_batches)  # before start_the_next_epoch (mid-epoch then)
    start_the_next_epoch(checkpoint)
    count_logged_steps_once(checkpoint, accumulate_grad_batches)


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


def _all_equal(counters: dict[str, int]) -> bool:
    return counters["ready"] == counters["started"] == counters["processed"] == counters["completed"]


def between_epochs(checkpoint: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` was written after an epoch's end hooks and before the next epoch began: the
    epoch counters read "finished" and the batch counters "last batch done". Lightning writes no
    checkpoint there; SIGTERM (checked after ``on_train_epoch_end``) stops there."""
    epochs, batches = epoch_progress(checkpoint), train_batch_progress(checkpoint)
    if not epochs or not batches:
        return False
    return _all_equal(epochs["total"]) and epochs["total"]["completed"] >= 1 and bool(batches.get("is_last_batch"))


def start_the_next_epoch(checkpoint: dict[str, Any]) -> bool:
    """Rewrite ``checkpoint["loops"]`` in place so that a checkpoint written between two epochs resumes at
    the next epoch's first batch, as a run that never stopped goes on. Returns whether it changed anything.

    Lightning 2.6 resumes such a file into an epoch that has every batch done already: an empty epoch
    (its end hooks run again, a ``train/bpc_epoch`` row of nothing, every later epoch numbered one too
    high and every row logged one step late). Here the counters read what Ctrl-C leaves at the start of
    the next epoch's first batch (a state Lightning resumes exactly): that epoch begun, its per-epoch
    counts (batches, scheduler and optimizer steps, validation batches) zero, its first batch fetched;
    ``count_logged_steps_once`` then corrects the logging step as for Ctrl-C. (Lightning's own "restarted
    on epoch start" would take batch -1 for a validation point and skip a training row.)"""
    if not between_epochs(checkpoint):
        return False
    epochs, batches, val = epoch_progress(checkpoint), train_batch_progress(checkpoint), val_batch_progress(checkpoint)
    for counters in (epochs["total"], epochs["current"]):
        counters["ready"] += 1
        counters["started"] += 1
    for counters in per_epoch_counters(checkpoint):
        counters.update(dict.fromkeys(counters, 0))
    batches["current"]["ready"] = 1
    batches["total"]["ready"] += 1
    batches["is_last_batch"] = False
    if val:
        val["total"].update(dict.fromkeys(val["total"], 0))
    return True


def count_validated_step_once(checkpoint: dict[str, Any], accumulate_grad_batches: int = 1) -> bool:
    """Rewrite ``checkpoint["loops"]`` in place so that a run resumed from a checkpoint written after a
    training batch and the validation that followed it, once Lightning had counted that batch's logging
    step (SIGTERM stops there), logs its metrics at the steps an uninterrupted run would. Returns whether
    it changed anything.

    Lightning resumes such a file by skipping the validation it takes for saved at its end (``last.ckpt``,
    written before the count) and counting the step then: once too often, so every later row would be
    logged one step late and one training row lost. Which of the two a file is, only the count tells:
    the global step (written after the count) or one less (before). ``charlm.validated_at_step`` (CharLM
    records it) says whether a validation followed the last batch; without it nothing is changed.
    """
    progress, steps, step = train_batch_progress(checkpoint), logged_steps(checkpoint), checkpoint.get("global_step")
    validated = checkpoint.get("charlm", {}).get("validated_at_step")
    if not progress or not steps or validated is None or between_epochs(checkpoint):
        return False
    if not (_all_equal(progress["total"]) and steps == step == validated):
        return False
    # Lightning's count after the skipped validation (TrainingEpochLoop.on_advance_end): when the batch stepped
    if not (progress["current"]["completed"] % max(1, accumulate_grad_batches) == 0 or progress.get("is_last_batch")):
        return False
    set_logged_steps(checkpoint, steps - 1)
    return True
