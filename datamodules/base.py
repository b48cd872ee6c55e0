"""The shared base of every corpus: caching, splitting, memory-mapping and stream batching.

A corpus module only says what its corpus is (``_corpus``: a ``Corpus`` whose bytes can be streamed
as they are, or a ``TarballCorpus`` whose members are first copied out in path order) and what its
cache folder is called; this class has it prepared into a token file once, memory-maps it, cuts
contiguous train/val/test splits (in that order), and serves stream batches per rank.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path

import lightning as L
import torch

from datamodules.batches.device_feed import DEFAULT_RESIDENT_FRACTION, DeviceFeed, free_memory, place_train_streams
from datamodules.batches.sizes import BatchSettings, check_corpus_fits, split_sizes
from datamodules.batches.streams import EvalStreams, TrainStreams
from datamodules.common.compat import batches_done_before_resume
from datamodules.io.fetch import OWN_FILE, Download, cached_download
from datamodules.io.prepare import is_prepared, load_tokens
from datamodules.io.vocab import Vocabulary
from datamodules.sources.corpus import Corpus, TarballCorpus


def default_cache_dir() -> Path:
    """``$CHARLM_CACHE`` if set, else ``~/.cache/charlm``."""
    return Path(os.environ.get("CHARLM_CACHE") or Path.home() / ".cache" / "charlm")


class CharDataModule(L.LightningDataModule):
    """A byte-level corpus served as contiguous streams for truncated BPTT."""

    def __init__(
        self,
        batch_size: int = 64,
        seq_len: int = 128,
        eval_batch_size: int = 16,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        cache_dir: str | None = None,
        device_resident_fraction: float = DEFAULT_RESIDENT_FRACTION,
    ) -> None:
        """
        Args:
            batch_size: parallel streams per process (B); each row continues across batches.
            seq_len: steps per batch (T), the truncated-BPTT window.
            eval_batch_size: streams the validation and test splits are cut into, whatever the
                number of processes (so bpc does not depend on it); must be >= the process count.
            val_fraction: share of the corpus, after the training part, used for validation.
            test_fraction: share of the corpus, at its very end, used for testing.
            cache_dir: where downloads and prepared token files are kept
                (default: $CHARLM_CACHE, else ~/.cache/charlm).
            device_resident_fraction: on a CUDA GPU, this process's training streams (its 1 / processes
                of the training split) are copied to the GPU once if they take at most this share of its
                free memory, measured when training starts; otherwise each batch is read from the
                memory-mapped token file ahead of use and copied through pinned memory. 0 always reads
                ahead (on the CPU too, where the split is otherwise sliced from the file as it is).
        """
        super().__init__()
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"--data.{name} must be a positive integer, got {value}.")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 0.5:
                raise ValueError(f"--data.{name} must lie strictly between 0 and 0.5, got {value}.")
        self.batch_size, self.seq_len, self.eval_batch_size = batch_size, seq_len, eval_batch_size
        if not 0 <= device_resident_fraction <= 1:
            raise ValueError(
                f"--data.device_resident_fraction must lie between 0 and 1, got {device_resident_fraction}.")
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.device_resident_fraction = device_resident_fraction
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._vocab: Vocabulary | None = None
        self._corpus_cache: Corpus | TarballCorpus | None = None
        self.splits: dict[str, torch.Tensor] = {}

    # --- what a corpus module provides -------------------------------------------------------
    @abstractmethod
    def _corpus(self) -> Corpus | TarballCorpus:
        """Obtain the corpus (download it, or find the local copy) and describe it."""

    def _local_or_downloaded(
        self, path: str | None, url: str, filename: str, sha256: str | None
    ) -> tuple[Path, Download | None]:
        """The corpus file: ``path`` as given (it must exist; no Download: it is never moved), else ``url``
        downloaded into the cache, checked against ``sha256`` (the module's --data.sha256)."""
        if path is not None:
            file = Path(path).expanduser()
            if not file.is_file():
                raise FileNotFoundError(f"--data.path: {file} does not exist or is not a file.")
            return file, None
        # a file in the cache that fails the checksum (put there by hand): how to train on it anyway
        own_file = OWN_FILE.removesuffix(".") + ", or leave it there and pass --data.sha256 null to accept it."
        got = cached_download(url, self.cache_dir / "downloads" / filename, sha256, own_file)
        return got.file, got

    # --- caching --------------------------------------------------------------------------------
    @property
    def corpus(self) -> Corpus | TarballCorpus:
        """The corpus ``_corpus`` describes, obtained once."""
        if self._corpus_cache is None:
            self._corpus_cache = self._corpus()
        return self._corpus_cache

    @property
    def prepared_dir(self) -> Path:
        return self.cache_dir / "prepared" / self.corpus.key

    def prepare_data(self) -> None:
        """Fetch and prepare the corpus once; later runs find it in the cache."""
        if not is_prepared(self.prepared_dir):
            self.corpus.prepare(self.prepared_dir)

    @property
    def vocab(self) -> Vocabulary:
        """The corpus vocabulary (prepares the corpus on first use, so the CLI can size the model)."""
        if self._vocab is None:
            self.prepare_data()
            self._vocab = Vocabulary.load(self.prepared_dir / "vocab.json")
        return self._vocab

    @property
    def vocab_symbols(self) -> list[int]:
        """The vocabulary as the list of byte values the model's hyperparameters store (prepares the corpus)."""
        try:
            return list(self.vocab.symbols)
        except AttributeError as err:
            # the CLI's link data.vocab_symbols -> model.vocab reads this with hasattr(), which takes an
            # AttributeError raised while preparing for "no such attribute": the link is dropped and the run
            # ends in CharLM's "missing 1 required positional argument: 'vocab'", far from the cause
            raise RuntimeError(f"preparing the corpus failed: {type(err).__name__}: {err}") from err

    # --- splits and batches ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # a no-op once prepared; covers use outside a Trainer
        tokens_np, self._vocab = load_tokens(self.prepared_dir)
        tokens = torch.from_numpy(tokens_np)  # (N,) uint8, memory-mapped
        _, world = self._rank_and_world()
        settings = BatchSettings(self.batch_size, self.seq_len, self.eval_batch_size, world, self.val_fraction,
                                 self.test_fraction)
        check_corpus_fits(len(tokens), self.corpus.source, stage, settings)  # before any stream is cut or padded
        n_train, n_val, _ = split_sizes(len(tokens), self.val_fraction, self.test_fraction)
        self.splits = {
            "train": tokens[:n_train],
            "val": tokens[n_train : n_train + n_val],
            "test": tokens[n_train + n_val :],
        }

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> TrainStreams | DeviceFeed:
        rank, world = self._rank_and_world()
        loader = TrainStreams(self.splits["train"], self.batch_size, self.seq_len, rank, world)  # memory-mapped
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device.type != "cuda":
            device = torch.device("cpu")  # other accelerators: Lightning copies each host batch (as before)
        # on a GPU: only this rank's streams, and only if they fit (datamodules.batches.device_feed)
        loader = place_train_streams(loader, device, self.device_resident_fraction, free_memory(device))
        done = batches_done_before_resume(self.trainer) if self.trainer is not None else None
        if done is not None:
            # resuming mid-epoch: continue with the first batch the checkpoint had not trained on
            loader.skip_next = done if done < len(loader) else 0
        return loader

    def _eval_loader(self, split: str) -> EvalStreams:
        rank, world = self._rank_and_world()
        return EvalStreams(self.splits[split], self.eval_batch_size, self.seq_len, rank, world)

    def val_dataloader(self) -> EvalStreams:
        return self._eval_loader("val")

    def test_dataloader(self) -> EvalStreams:
        return self._eval_loader("test")
