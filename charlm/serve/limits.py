"""What one request may ask of the server, stated once: the page shows these numbers, the routes enforce them."""

from __future__ import annotations

MAX_BODY = 2_000_000  # bytes of one request's JSON: a 1 MB paste arrives, and is then cut or refused below
MAX_PROMPT = 10_000  # bytes of a Write prompt
MAX_LENGTH = 10_000  # bytes one sample may generate
MAX_LOOK = 5_000  # bytes Look inside reads (the page sends the first MAX_LOOK and says so)
MAX_COMPARE = 20_000  # bytes Who wrote this reads
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


def as_dict() -> dict[str, int]:
    """The limits as the page shows them."""
    return {"max_body": MAX_BODY, "max_prompt": MAX_PROMPT, "max_length": MAX_LENGTH, "max_look": MAX_LOOK,
            "max_compare": MAX_COMPARE, "saliency_window": SALIENCY_WINDOW, "max_samples": MAX_SAMPLES}
