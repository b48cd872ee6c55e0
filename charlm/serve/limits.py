"""What one request may ask of the server, stated once: the page shows these numbers, the routes enforce them."""

from __future__ import annotations

from typing import Any

MAX_PROMPT = 10_000  # bytes of a Write prompt
MAX_LENGTH = 10_000  # bytes one sample may generate
MAX_LOOK = 5_000  # bytes Look inside reads (the page sends the first MAX_LOOK and says so)
MAX_COMPARE = 20_000  # bytes Who wrote this reads
# bytes of one request's JSON: the longest text field with every byte escaped (\u001f: 6 bytes), and the other
# fields. No more is read (a refusal names the route's text field and its bound), so parsing a body takes a few MB
# at most: 2 MB of "[{},{},...]" took 46 MB as Python objects.
MAX_BODY = 6 * max(MAX_PROMPT, MAX_LOOK, MAX_COMPARE) + 10_000
SALIENCY_WINDOW = 100  # earlier bytes whose influence on one prediction is measured
MAX_SAMPLES = 8  # samples side by side in one click (each is one generation)
DEFAULT_GENERATIONS = 8  # generations running at once, all tabs together (--max_generations)
ANALYSES_AT_ONCE = 2  # Look inside / saliency / Who wrote this requests computed at once (others wait their turn)
TRACE_CACHE_BYTES = 256 * 2**20  # traces of recent texts kept for recolouring and typing on


class LimitError(ValueError):
    """A request over a limit or otherwise malformed: its message is shown to the user as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_size(data: bytes, limit: int, what: str) -> None:
    """Refuse ``data`` over ``limit`` bytes (413), naming ``what`` and the limit."""
    if len(data) > limit:
        raise LimitError(f"{what} is {len(data):,} bytes; this server takes at most {limit:,}. "
                         f"Use a shorter text.", 413)


JSON_WORDS = {None: "null", True: "true", False: "false"}


def shown(value: Any) -> str:
    """``value`` as a message quotes it: in JSON's words, a string cut at 40 characters, a container by its kind only
    (its contents may be nested hundreds deep, or a megabyte long)."""
    if value is None or isinstance(value, bool):
        return JSON_WORDS[value]
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    if isinstance(value, str) and len(value) > 40:
        value = value[:37] + "..."
    return repr(value)  # a str's repr escapes lone surrogates and control characters: the message stays UTF-8


def as_dict() -> dict[str, int]:
    """The limits as the page shows them."""
    return {"max_body": MAX_BODY, "max_prompt": MAX_PROMPT, "max_length": MAX_LENGTH, "max_look": MAX_LOOK,
            "max_compare": MAX_COMPARE, "saliency_window": SALIENCY_WINDOW, "max_samples": MAX_SAMPLES}
