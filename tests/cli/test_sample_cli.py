"""`charlm sample` as a user runs it, against a checkpoint trained in the test session."""

import numpy as np
import pytest
import torch

from charlm.checkpoint import load_checkpoint
from charlm.infer.engine import encode_prompt
from datamodules.io.vocab import Vocabulary
from tests.cli_runs import assert_one_line, charlm


def test_streams_a_seeded_sample_that_continues_the_prompt(tiny_checkpoint):
    args = ["sample", "--ckpt_path", str(tiny_checkpoint), "--prompt", "ROMEO:", "--length", "300", "--seed", "7"]
    first, second = charlm(*args), charlm(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # same seed, same text
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) >= 300
    other = charlm(*args[:-1], "8")
    assert other.stdout != first.stdout


def test_greedy_top_k_top_p_batch_and_stop(tiny_checkpoint, tmp_path):
    base = ["sample", "--ckpt_path", str(tiny_checkpoint), "--length", "200"]
    greedy = [charlm(*base, "--temperature", "0", "--seed", s).stdout for s in ("1", "2")]
    assert greedy[0] == greedy[1]  # argmax ignores the seed
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("KING HENRY VI:\nWhat")
    batch = charlm(*base, "--prompt_file", str(prompt), "--num_samples", "3", "--top_k", "5", "--top_p", "0.9",
                   "--seed", "3", "--stop", r"\n\n")  # as typed in a shell: backslash, n
    assert batch.returncode == 0, batch.stderr
    samples = batch.stdout.split("===== sample ")[1:]
    assert len(samples) == 3 and all("KING HENRY VI:\nWhat" in s for s in samples)
    assert all("\n\n" not in s.rstrip("\n") for s in samples)  # each ends before its stop string


def test_bad_inputs_are_named(tiny_checkpoint, tmp_path, charlm_main):
    base = ["sample", "--ckpt_path", str(tiny_checkpoint)]
    cases = {
        ("--prompt", "ROMEO€"): "'€' (U+20AC, bytes e2 82 ac)",
        ("--temperature", "-1"): "--temperature must be >= 0",
        ("--top_p", "1.5"): "--top_p must lie in (0, 1]",
        ("--length", "-1"): "--length must be >= 0",
    }
    for extra, message in cases.items():
        out = charlm_main(*base, *extra)
        assert out.returncode == 2 and message in out.stderr, (extra, out.stderr)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    not_charlm = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, not_charlm)
    for path, message in [(tmp_path / "missing.ckpt", "does not exist"), (truncated, "truncated or corrupted"),
                          (not_charlm, "not a charlm checkpoint")]:
        out = charlm_main("sample", "--ckpt_path", str(path))
        assert out.returncode == 2 and f"--ckpt_path: {path}" in out.stderr and message in out.stderr, out.stderr


def test_checkpoint_loads_on_cpu_with_its_vocabulary(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint, "cpu")
    assert len(loaded.vocab) == 65 and not loaded.model.training
    assert next(loaded.model.parameters()).device.type == "cpu"


def test_help_documents_every_option():
    out = charlm("sample", "--help")
    for flag in ["--ckpt_path", "--temperature", "--top_k", "--top_p", "--num_samples", "--seed", "--stop",
                 "--prompt_file", "--beam", "--interactive", "--unknown"]:
        assert flag in out.stdout
    assert "always the most likely byte" in out.stdout


def test_unknown_skip_leaves_out_what_the_model_never_saw(tiny_checkpoint, charlm_main):
    base = ["sample", "--ckpt_path", tiny_checkpoint, "--length", "50", "--seed", "4"]
    plain = charlm_main(*base, "--prompt", "ROMEO:")
    skipped = charlm_main(*base, "--prompt", "RO\u20acMEO:", "--unknown", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout == plain.stdout  # the model read (and the echo shows) the prompt without the euro sign
    assert "note: --prompt: skipped 3 bytes" in skipped.stderr and "U+20AC" in skipped.stderr
    out = charlm_main(*base, "--prompt", "\u20ac", "--unknown", "skip")
    assert out.returncode == 2 and "--prompt: nothing is left of the prompt" in out.stderr


def test_interactive_switch_and_its_bad_companions(tiny_checkpoint, charlm_main):
    base = ["sample", "--ckpt_path", tiny_checkpoint, "--interactive"]
    for extra, word in [(["--prompt", "ROMEO:"], "--prompt"), (["--num_samples", "2"], "--num_samples")]:
        out = charlm_main(*base, *extra)
        assert out.returncode == 2 and "--interactive reads its prompts from standard input" in out.stderr
        assert f"leave out {word}" in out.stderr, out.stderr
    assert charlm_main(*base, "--interactive", "maybe").returncode == 2


def test_the_default_temperature_is_0_8_and_is_not_given_with_beam(tiny_checkpoint, charlm_main):
    base = ["sample", "--ckpt_path", tiny_checkpoint, "--length", "50", "--seed", "4"]
    assert charlm_main(*base).stdout == charlm_main(*base, "--temperature", "0.8").stdout
    assert "default when sampling: 0.8; not with --beam" in " ".join(charlm_main("sample", "--help").stdout.split())


def test_a_no_switch_takes_no_value(tiny_checkpoint, charlm_main):
    base = ["sample", "--ckpt_path", tiny_checkpoint, "--length", "5", "--prompt", "ROMEO:", "--temperature", "0"]
    echoed = charlm_main(*base).stdout
    assert echoed.startswith("ROMEO:")
    for flags in (["--no_echo_prompt"], ["--echo_prompt", "false"], ["--echo_prompt", "no"]):
        assert charlm_main(*base, *flags).stdout == echoed.removeprefix("ROMEO:"), flags
    for flags in (["--echo_prompt"], ["--echo_prompt", "true"], ["--no_echo_prompt", "--echo_prompt"]):
        assert charlm_main(*base, *flags).stdout == echoed, flags
    assert_one_line(charlm_main(*base, "--no_echo_prompt", "false"), "false")  # not "no echo: false" = echo
    usage = charlm_main("sample", "--help").stdout
    assert "[--no_interactive]" in usage and "--no_interactive [" not in usage
    assert "the same as --interactive false" in usage


def test_encode_prompt_skips_in_one_pass(capsys):
    vocab = Vocabulary.from_bytes(b"abc\n")
    data = b"abxc" * 250_000 + b"\xff"  # 1 MB
    kept, ids = encode_prompt(vocab, data, "skip", "--prompt_file")
    assert vocab.decode(ids) == b"abc" * 250_000 and ids.dtype == np.uint8
    assert kept == b"abc" * 250_000  # what the model reads, and what is echoed
    assert "note: --prompt_file: skipped 250001 bytes" in capsys.readouterr().err
    assert list(encode_prompt(vocab, b"ca\n", "error", "--prompt")[1]) == [3, 1, 0]  # ids: \\n a b c
    with pytest.raises(ValueError, match=r"--prompt: the prompt contains the bytes 'x' .*--unknown skip"):
        encode_prompt(vocab, data, "error", "--prompt")
