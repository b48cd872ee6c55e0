"""How a corpus is cut into splits, and whether the batch settings fit them.

Checked once in ``setup()``, before any stream is cut or padded: a ``--data.seq_len`` larger than
the corpus must be refused in one line, not discovered after sanity validation padded every
evaluation stream to it.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val", "test")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}  # else all three


def split_sizes(num_tokens: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes of the contiguous (train, val, test) splits; val and test are rounded to whole bytes."""
    val, test = round(num_tokens * val_fraction), round(num_tokens * test_fraction)
    return num_tokens - val - test, val, test


@dataclass(frozen=True)
class BatchSettings:
    """What the splits must serve: B x processes training streams of T+1 bytes, E evaluation streams."""

    batch_size: int
    seq_len: int
    eval_batch_size: int
    world_size: int
    val_fraction: float
    test_fraction: float

    def needs(self) -> dict[str, int]:
        """Bytes each split needs: train one batch, val and test one prediction per stream."""
        train = self.batch_size * self.world_size * (self.seq_len + 1)
        return {"train": train, "val": self.eval_batch_size + 1, "test": self.eval_batch_size + 1}

    def smallest(self) -> BatchSettings:
        """The least demanding settings there are (B = T = 1, one evaluation stream per process)."""
        return BatchSettings(1, 1, self.world_size, self.world_size, self.val_fraction, self.test_fraction)

    def sizes(self, num_tokens: int) -> dict[str, int]:
        return dict(zip(SPLITS, split_sizes(num_tokens, self.val_fraction, self.test_fraction), strict=True))

    def smallest_corpus(self, splits: tuple[str, ...]) -> int:
        """The fewest corpus bytes whose ``splits`` meet these needs."""
        needs = self.needs()
        shares = {"train": 1 - self.val_fraction - self.test_fraction, "val": self.val_fraction,
                  "test": self.test_fraction}
        n = max(1, int(max(needs[s] / shares[s] for s in splits) - 2 / min(shares.values())))  # just below it
        while any(self.sizes(n)[s] < needs[s] for s in splits):  # rounding: a few steps at most
            n += 1
        return n


def check_corpus_fits(num_tokens: int, source: str, stage: str | None, settings: BatchSettings) -> None:
    """Raise one ValueError naming the flags and split sizes if the corpus cannot serve ``stage``."""
    splits = STAGE_SPLITS.get(stage or "", SPLITS)
    if settings.eval_batch_size < settings.world_size and splits != ("train",):
        raise ValueError(
            f"--data.eval_batch_size ({settings.eval_batch_size}) must be at least the number of processes "
            f"({settings.world_size}), so that every process evaluates at least one stream."
        )
    sizes, needs = settings.sizes(num_tokens), settings.needs()
    short = [s for s in splits if sizes[s] < needs[s]]
    if not short:
        return
    at_least = settings.smallest_corpus(splits)
    floor = settings.smallest().smallest_corpus(splits)
    if num_tokens < floor:
        raise ValueError(
            f"The corpus {source} has only {num_tokens:,} byte{'s' if num_tokens != 1 else ''}: too small to train "
            f"and evaluate on. It needs at least {floor:,} bytes even with the smallest settings ({at_least:,} with "
            f"these); use a bigger corpus."
        )
    problems, flags = [], []
    if "train" in short:
        processes = f" x {settings.world_size} processes" if settings.world_size > 1 else ""
        problems.append(f"the training split ({sizes['train']:,} bytes) is shorter than one batch, --data.batch_size "
                        f"{settings.batch_size}{processes} x (--data.seq_len {settings.seq_len} + 1) = "
                        f"{needs['train']:,} bytes")
        flags += ["--data.seq_len", "--data.batch_size"]
    for s in short:
        if s != "train":
            problems.append(f"the {'validation' if s == 'val' else 'test'} split ({sizes[s]:,} bytes) is shorter than "
                            f"--data.eval_batch_size {settings.eval_batch_size} streams + 1 = {needs[s]:,} bytes")
    if any(s != "train" for s in short):
        flags.append("--data.eval_batch_size")
    raise ValueError(
        f"The corpus {source} ({num_tokens:,} bytes: train {sizes['train']:,}, val {sizes['val']:,}, test "
        f"{sizes['test']:,}) is too small for these settings: {'; '.join(problems)}. Lower {' or '.join(flags)}, "
        f"or use a corpus of at least {at_least:,} bytes."
    )
