"""A request's JSON body, read and checked in one place: every way a body can be wrong is a 4xx whose message
names the field at fault (or "The request", when no field can be read) and says what to send.

``read_body`` reads the bytes within MAX_BODY, strictly as UTF-8, into one JSON object, and refuses:
- a body over MAX_BODY (413) before reading past it, naming the route's text field and its bound;
- nesting deeper than the parser's recursion allows (RecursionError, ~1,000 levels: the page sends a flat object);
- a lone surrogate in a name or a string (JSON's "\\ud800" escape decodes to one: half of a UTF-16 pair, which
  UTF-8 cannot carry, so the text could be neither encoded for the model nor sent back).
A number JSON allows but no field takes (NaN, Infinity, 1e400, more than MAX_DIGITS digits) is kept as an
``Unusable`` until a field is read, so that its refusal names the field. The routes read fields only through
``Body``'s readers (text, integer, number, choice), and messages quote a value only through ``limits.shown``.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from charlm.serve.limits import MAX_BODY, LimitError, check_size, shown

MAX_DIGITS = 20  # digits of a JSON integer: a seed lies below 2^64, 20 digits; more is refused as out of range
SURROGATE = re.compile("[\ud800-\udfff]")
REQUIRED = object()  # a reader's default: the field must be given

if TYPE_CHECKING:  # app is the one module that imports the web libraries
    from starlette.requests import Request


class Unusable:
    """A number as written in the body that no field takes: NaN, +-Infinity, one past float's range, or an
    integer of more than MAX_DIGITS digits. Refused (naming the field) only if a route reads it; ``rule``
    says what the field must be."""

    def __init__(self, written: str, rule: str) -> None:
        self.written, self.rule = written, rule

    def __repr__(self) -> str:
        return self.written if len(self.written) <= 24 else f"{self.written[:20]}... ({len(self.written):,} digits)"


def _constant(word: str) -> Unusable:
    return Unusable(word, "must be a finite number")


def _float(written: str) -> float | Unusable:
    value = float(written)
    return value if math.isfinite(value) else Unusable(written, "must be a finite number (this one overflows)")


def _int(written: str) -> int | Unusable:
    if len(written.lstrip("-")) > MAX_DIGITS:  # before int(): Python refuses 4,300 digits and more as not JSON
        return Unusable(written, f"must have at most {MAX_DIGITS} digits")
    return int(written)


async def _read(request: Request, field: str, limit: int) -> bytes:
    """The body's bytes, refused (413) as soon as they are known to pass MAX_BODY."""
    too_big = (f"this server takes at most {MAX_BODY:,} bytes, the {field} at most {limit:,} bytes: send a shorter "
               f"{field}.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise LimitError(f"The request is {int(declared):,} bytes; {too_big}", 413)
    body = bytearray()
    async for chunk in request.stream():  # chunked: no length declared, counted as it comes
        body += chunk
        if len(body) > MAX_BODY:
            raise LimitError(f"The request is over {MAX_BODY:,} bytes; {too_big}", 413)
    return bytes(body)


def _parse(data: bytes) -> Any:
    """``data`` as JSON text in UTF-8 (a BOM allowed; UTF-16, and UTF-8 that encodes a surrogate, refused)."""
    try:
        text = data.decode("utf-8-sig")  # strict: json.loads(bytes) would guess UTF-16 and pass surrogates through
    except UnicodeDecodeError as err:
        raise LimitError(f"The request is not UTF-8 (byte {data[err.start]:#04x} at {err.start:,}): send JSON "
                         f"as UTF-8.") from None
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:  # the parser recurses once per level
        raise LimitError("The request is nested too deeply to read: send one flat JSON object.") from None
    except json.JSONDecodeError as err:
        raise LimitError(f"The request is not JSON ({err.msg} at character {err.pos:,}).") from None


def _check_unicode(name: str, value: str) -> None:
    """Refuse a lone surrogate in field ``name``'s ``value``, saying where it is."""
    found = SURROGATE.search(value)
    if found:
        raise LimitError(f"{name} has a lone surrogate ({found.group()!r}, character {found.start():,}): half of a "
                         f"UTF-16 pair, not a character. Send whole characters (both halves of a pair).")


async def read_body(request: Request, field: str, limit: int) -> Body:
    """The request's JSON object, whose text ``field`` (the route's: prompt or text) may be ``limit`` bytes."""
    value = _parse(await _read(request, field, limit))
    if not isinstance(value, dict):
        raise LimitError(f"The request must be a JSON object of fields, got {shown(value)}.")
    for name, item in value.items():
        if SURROGATE.search(name):
            raise LimitError(f"The request has a field name with a lone surrogate ({shown(name)}): send whole "
                             f"characters.")
        if isinstance(item, str):
            _check_unicode(name, item)
    return Body(value, field, limit)


class Body(dict):
    """A request's fields (read_body's checks passed), read each by its kind; every refusal names its field.
    A missing field takes the reader's ``default`` (none given: the field is required); so does null in a
    number field, as the page sends an empty box."""

    def __init__(self, fields: dict[str, Any], field: str, limit: int) -> None:
        super().__init__(fields)
        self.field, self.limit = field, limit

    def _missing(self, key: str, default: Any) -> bool:
        if key not in self and default is REQUIRED:
            raise LimitError(f"{key} is missing: this request needs it.")
        return key not in self

    def _numeric(self, key: str, default: Any) -> bool:
        """Whether number field ``key`` takes ``default``; refuses a number no field takes."""
        if self._missing(key, default) or (self[key] is None and default is not REQUIRED):
            return True
        if isinstance(self[key], Unusable):
            raise LimitError(f"{key} {self[key].rule}, got {self[key]!r}")
        return False

    def text(self, default: Any = REQUIRED) -> str:
        """The route's text field, at most ``limit`` bytes as UTF-8 (413 past it)."""
        if self._missing(self.field, default):
            return default
        value = self[self.field]
        if not isinstance(value, str):
            raise LimitError(f"{self.field} must be a string, got {shown(value)}")
        check_size(value.encode(), self.limit, self.field)  # read_body refused surrogates: it encodes
        return value

    def integer(self, key: str, default: Any = REQUIRED) -> int | None:
        """An integer field (a float that is an integer exactly counts)."""
        if self._numeric(key, default):
            return default
        value = self[key]
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:  # exactly an integer
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise LimitError(f"{key} must be an integer, got {shown(value)}")
        return value

    def number(self, key: str, default: Any = REQUIRED) -> float | None:
        """A finite number field."""
        if self._numeric(key, default):
            return default
        value = self[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LimitError(f"{key} must be a number, got {shown(value)}")
        return float(value)

    def choice(self, key: str, options: tuple[str, ...], default: Any = REQUIRED) -> str:
        """A field that is one of the strings ``options``."""
        if self._missing(key, default):
            return default
        value = self[key]
        if not isinstance(value, str) or value not in options:
            raise LimitError(f"{key} must be {' or '.join(options)}, got {shown(value)}")
        return value
