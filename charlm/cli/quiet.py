"""Silence what libraries print on every run that no charlm user can act on.

Each filter is scoped to one message, so any other warning still shows:

- torch's "``isinstance(treespec, LeafSpec)`` is deprecated", raised inside Lightning's own code;
- torch's "RNN module weights are not part of single contiguous chunk of memory": ``--model.weight_drop``
  hands cuDNN dropped copies of the recurrent weights on every training step, which it copies into one
  block, as intended there;
- torch's "torch.distributed.nn.functional.all_gather is deprecated", raised inside Lightning's
  ``LightningModule.all_gather`` under DDP, once per process;
- Lightning's advertisements "💡 Tip: ... try installing litlogger" (and litmodels);
- for ``validate`` / ``test`` only: ModelCheckpoint's "The dirpath has changed from ...", which
  concerns resuming a fit (the evaluation writes no checkpoint).
"""

from __future__ import annotations

import logging
import warnings

from charlm.compat import lightning_info_logger


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


_TIPS = _DropMessages("💡 Tip: For seamless cloud")  # litlogger, litmodels


def quiet_library_noise(subcommand: str | None = None) -> None:
    """Install the filters (idempotent); ``subcommand`` adds those that only make sense for it."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated")
    logger = lightning_info_logger()
    if _TIPS not in logger.filters:
        logger.addFilter(_TIPS)
    if subcommand in ("validate", "test"):
        warnings.filterwarnings("ignore", message=r"The dirpath has changed from .* won't be reloaded")
