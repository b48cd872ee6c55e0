"""``--data.max_bytes``: a slice from the start of a corpus too big to take whole.

The cut falls on a UTF-8 character boundary: the corpus keeps its first ``limit`` bytes, less the
1-3 bytes of a character that would cross the limit (up to 3 bytes, never more, even in bytes that
are not UTF-8), so a slice never ends in half a character. Reading stops one byte past the limit:
the rest of a stream is never fetched.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

# decimal units as disks and the hub count them; binary ones spelled out (KiB, MiB, ...)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_byte_size(value: int | str | None, flag: str = "--data.max_bytes") -> int | None:
    """``5000000``, ``"5MB"`` (10^6), ``"1.5GB"``, ``"64KiB"`` (2^10) -> bytes; None stays None.
    Anything else, or a size below one byte, is a ValueError naming ``flag``."""
    if value is None:
        return None
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if isinstance(value, bool) or not (isinstance(value, int) or (match and match[2].lower() in _UNITS)):
        raise ValueError(f"{flag} must be a number of bytes such as 5000000, 5MB, 1.5GB or 64KiB, got {value!r}.")
    size = value if isinstance(value, int) else int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 1:
        raise ValueError(f"{flag} must be at least 1 byte, got {value!r}; leave it unset to take the whole corpus.")
    return size


def is_continuation(byte: int) -> bool:
    """A UTF-8 continuation byte (0b10xxxxxx): a character began before it."""
    return byte & 0xC0 == 0x80


class ByteLimit:
    """Cuts byte chunks at ``limit`` (see the module docstring); says once on stderr where it cut."""

    def __init__(self, limit: int, source: str, shown: int | str) -> None:
        self.limit, self.source, self.shown = limit, source, shown  # shown: the flag's value as given
        self.announced = False

    def cut(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks``, up to the cut; stops reading them one byte past the limit."""
        it = iter(chunks)
        kept = 0
        for chunk in it:
            # bytes before limit - 3 are kept whatever follows; the last few depend on the byte after the limit
            if kept + len(chunk) <= self.limit - 3:
                kept += len(chunk)
                yield chunk
                continue
            rest = bytearray(chunk)  # starts at offset kept <= limit - 3
            while len(rest) <= self.limit - kept:  # until the first byte past the limit is in sight
                more = next(it, None)
                if more is None:
                    yield bytes(rest)  # the whole corpus is within the limit
                    return
                rest += more
            end = self.limit - kept  # rest[end]: the first byte left out
            while end > self.limit - kept - 3 and end > 0 and is_continuation(rest[end]):
                end -= 1  # rest[end] continues a character: leave that whole character out
            yield bytes(rest[:end])
            self._announce(kept + end)
            return

    def _announce(self, size: int) -> None:
        if not self.announced:
            self.announced = True
            # tqdm.write: on its own line, above a progress bar that is running
            tqdm.write(f"charlm: --data.max_bytes {self.shown}: the corpus {self.source} was cut at {size:,} bytes "
                       f"(the last whole UTF-8 character within {self.limit:,}); the rest is left out.",
                       file=sys.stderr)
