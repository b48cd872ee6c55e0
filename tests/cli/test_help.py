"""Every command's --help, read side by side: one usage form, one device rule, one unit, only what charlm takes."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator

import pytest

from charlm.cli.table import NAMES

DEFINITION = "Scores are in bpc, bits per character"


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """``charlm --help`` (key "") and ``charlm NAME --help`` of every command, as printed."""
    from charlm.__main__ import run

    def printed(argv: list[str]) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), mock_argv(argv), pytest.raises(SystemExit) as done:
            run()
        assert done.value.code in (0, None)
        return out.getvalue()

    return {name: printed(["charlm", *([name] if name else []), "--help"]) for name in ("", *NAMES)}


@contextlib.contextmanager
def mock_argv(argv: list[str]) -> Iterator[None]:
    saved, sys.argv = sys.argv, argv
    try:
        yield
    finally:
        sys.argv = saved


def test_one_usage_form(helps):
    for name in NAMES:
        assert helps[name].startswith(f"usage: charlm {name} "), helps[name][:80]
        assert "[options]" not in helps[name]


def test_one_unit_defined_once(helps):
    assert DEFINITION in " ".join(helps[""].split())
    for name, text in helps.items():
        flat = " ".join(text.split())
        assert "bits per byte" not in flat.lower(), name
        assert flat.count("bits per character") == (1 if name == "" else flat.count("fewer bits per character")), name


def test_one_device_rule(helps):
    defaults = {name: re.search(r"--device DEVICE .*?default: (\w+)\)", " ".join(helps[name].split()))
                for name in NAMES}
    with_device = {name: m[1] for name, m in defaults.items() if m}
    assert set(with_device) == {"sample", "score", "classify", "serve"}
    assert {name for name, default in with_device.items() if default != "auto"} == {"serve"}
    assert "tested on CPUs only" in " ".join(helps["serve"].split())  # the stated reason


def test_only_what_charlm_takes_is_offered(helps):
    for name in ("fit", "validate", "test"):
        ckpt = " ".join(helps[name].split("--ckpt_path CKPT_PATH\n", 1)[1].split("\n  --", 1)[0].split())
        assert not re.search(r"\b(hpc|registry)\b|\"last\"", ckpt), (name, ckpt)
    for name, text in helps.items():
        assert "--stop+" not in text and not re.search(r"default: \)", text), name


def test_a_default_with_a_newline_is_shown_as_written(helps):
    assert 'default: "\\n")' in " ".join(helps["sample"].split())
