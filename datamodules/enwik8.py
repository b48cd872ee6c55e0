"""enwik8: the first 10^8 bytes of an English Wikipedia XML dump (Hutter Prize), 205 symbols.

The standard split of every published result: the first 90,000,000 bytes train, the next
5,000,000 validate, the last 5,000,000 test. bpc is per byte, so numbers compare directly with
the literature (test bpc: AWD-LSTM 1.232, Mogrifier LSTM 1.146, ...).
"""

from __future__ import annotations

from datamodules.base import CharDataModule
from datamodules.io.fetch import set_aside_if_bad
from datamodules.io.prepare import file_chunks
from datamodules.sources.corpus import Corpus
from datamodules.sources.files import zip_member_chunks, zip_member_size

URL = "http://mattmahoney.net/dc/enwik8.zip"
SHA256 = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"  # of the member, 100,000,000 bytes
MEMBER = "enwik8"


class Enwik8DataModule(CharDataModule):
    """enwik8 from ``enwik8.zip`` (downloaded once, or a local copy), streamed out of the zip."""

    def __init__(
        self,
        path: str | None = None,
        url: str = URL,
        sha256: str | None = SHA256,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        **kwargs,
    ) -> None:
        """
        Args:
            path: a local ``enwik8.zip``, or the unzipped 100,000,000-byte ``enwik8`` file.
            url: where to download ``enwik8.zip`` from (a mirror, say) when no ``path`` is given.
            sha256: checksum the unzipped ``enwik8`` must have; null accepts any content.
            val_fraction: 0.05 = the standard 5,000,000 validation bytes.
            test_fraction: 0.05 = the standard last 5,000,000 bytes.
        """
        super().__init__(val_fraction=val_fraction, test_fraction=test_fraction, **kwargs)
        self.path, self.url, self.sha256 = path, url, sha256

    def _corpus(self) -> Corpus:
        # the zip has no published checksum: its member's sha256 is checked while preparing
        file, download = self._local_or_downloaded(self.path, self.url, "enwik8.zip", sha256=None)
        key = f"enwik8-{(self.sha256 or 'unverified')[:16]}-{file.stat().st_size}-{file.stat().st_mtime_ns}"
        if download is None:  # the user's own file: never suggest deleting it (and it is never moved)
            hint = (f"It is not the standard enwik8; to train on it anyway, pass --data.sha256 null "
                    f"(or check that --data.path {self.path} is the file you meant).")
        else:  # set_aside_if_bad says the rest: where it went, and what to do
            hint = "Check --data.url." if download.fetched else ""
        if file.suffix == ".zip":
            with set_aside_if_bad(download):
                size = zip_member_size(file, MEMBER)
            return Corpus(zip_member_chunks(file, MEMBER), f"{file}:{MEMBER}", size, key, self.sha256, hint, download)
        return Corpus(file_chunks(file), str(file), file.stat().st_size, key, self.sha256, hint, download)
