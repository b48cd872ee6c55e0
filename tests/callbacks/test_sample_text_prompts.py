"""SampleText's prompts against the corpus's vocabulary: the default newline falls back to a character the corpus
has (with a note); a prompt the user wrote is refused in one line if the corpus lacks its bytes."""

from __future__ import annotations

import json

import pytest

from charlm.callbacks.sample_text import SampleText, fallback_prompt
from datamodules.io.vocab import Vocabulary
from tests.cli_runs import run_in, small_run


def test_the_default_newline_falls_back_to_a_character_the_corpus_has(capsys):
    assert SampleText._usable("\n", Vocabulary(tuple(b"\n ab"))) == "\n"
    assert SampleText._usable("\n", Vocabulary(tuple(b" ab"))) == " "
    assert "no newline" in capsys.readouterr().err
    assert SampleText._usable("\n", Vocabulary(tuple(b"xyz"))) == "x"  # no space either: its first printable
    assert fallback_prompt(Vocabulary((0xA9, 0xC3))) is None  # nothing printable in ASCII
    with pytest.raises(ValueError, match=r"SampleText prompt '\\n'"):
        SampleText._usable("\n", Vocabulary((0xA9, 0xC3)))


def test_a_prompt_the_user_wrote_is_not_replaced():
    with pytest.raises(ValueError, match=r"SampleText prompt 'ROMEO:'.*init_args\.prompts"):
        SampleText._usable("ROMEO:", Vocabulary(tuple(b" abc")))


def test_the_default_run_trains_and_samples_a_corpus_without_newlines(tmp_path, shakespeare_path, capfd):
    corpus = tmp_path / "one-line.txt"
    corpus.write_bytes(shakespeare_path.read_bytes()[:60_000].replace(b"\n", b" "))
    cli = run_in(tmp_path, small_run(corpus, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                                     "--trainer.limit_val_batches", "1", "--trainer.logger.mode", "disabled"))
    assert cli.trainer.global_step == 2
    assert "the corpus has no newline, so the samples start from ' '" in capfd.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / cli.trainer.log_dir / "samples.jsonl").read_text().splitlines()]
    assert rows and {row["prompt"] for row in rows} == {" "}
