"""Tiny Shakespeare: 1,115,394 bytes of Shakespeare's plays, as in char-rnn (65 distinct bytes).

Split (contiguous, in file order): the first 90% trains (1,003,854 bytes), the next 5% validates
(55,770) and the last 5% tests (55,770). nanoGPT validates on the last 10%, i.e. on our val and
test together, so its numbers are close to but not the same as ours.
"""

from __future__ import annotations

from datamodules.base import CharDataModule
from datamodules.io.fetch import sha256_of
from datamodules.io.prepare import file_chunks
from datamodules.sources.corpus import Corpus

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class ShakespeareDataModule(CharDataModule):
    """Tiny Shakespeare (char-rnn's ``input.txt``), downloaded once or taken from a local copy."""

    def __init__(self, path: str | None = None, url: str = URL, sha256: str | None = SHA256, **kwargs) -> None:
        """
        Args:
            path: a local copy of ``input.txt`` to use instead of downloading (used as is).
            url: where to download ``input.txt`` from (a mirror, say) when no ``path`` is given.
            sha256: the checksum the download must have; null accepts any file from ``url``.
        """
        super().__init__(**kwargs)
        self.path, self.url, self.sha256 = path, url, sha256

    def _corpus(self) -> Corpus:
        file, _ = self._local_or_downloaded(self.path, self.url, "tinyshakespeare.txt", self.sha256)
        return Corpus(file_chunks(file), str(file), file.stat().st_size, f"shakespeare-{sha256_of(file)[:16]}")
