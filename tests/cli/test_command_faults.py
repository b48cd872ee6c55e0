"""The checkpoint commands (sample, visualize, score, classify) at the edges a user reaches: a closed
pipe, Ctrl-C, devices this machine lacks, numbers at their limits, a folder where a file goes.

Issue 10 items 9 (pipes and Ctrl-C), 17 (--device), 20 (visualize --out / --max_bytes, tiny
temperatures and the like), 15 (a failed write is one line).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

from charlm.infer.logits import sample_next
from tests.cli_runs import assert_one_line
from tests.conftest import REPO


def start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "charlm", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


# --- 9: `| head` and Ctrl-C end quietly --------------------------------------------------------
def test_sample_into_a_closed_pipe_ends_quietly_with_141(tiny_checkpoint):
    """``charlm sample | head -c 100``: head reads 100 bytes and exits; sample must go without a word."""
    proc = start("sample", "--ckpt_path", str(tiny_checkpoint), "--length", "10000000", "--device", "cpu")
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()  # what head does when it has had enough
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, stderr
    assert stderr == b""


@pytest.mark.parametrize("command", ["score", "classify"])
def test_a_closed_pipe_before_the_first_line_ends_quietly(command, tiny_checkpoint):
    ckpts = [str(tiny_checkpoint)] * (2 if command == "classify" else 1)
    proc = start(command, "--ckpt_path", *ckpts, "--text", "To be, or not to be")
    proc.stdout.close()  # `... | true`
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, stderr
    assert stderr == b""


def test_ctrl_c_during_sample_ends_quietly_with_130(tiny_checkpoint):
    proc = start("sample", "--ckpt_path", str(tiny_checkpoint), "--length", "10000000", "--device", "cpu")
    assert len(proc.stdout.read(200)) == 200  # it is writing: the interrupt lands while it samples
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"KeyboardInterrupt" not in stderr


# --- 17: devices this machine does not have ----------------------------------------------------
@pytest.mark.parametrize("command", ["sample", "score"])
def test_a_device_this_machine_lacks_is_named_as_such(command, tiny_checkpoint, charlm_main):
    base = [command, "--ckpt_path", tiny_checkpoint] + (["--text", "hello"] if command == "score" else [])
    cases = {"foo": "--device 'foo' is not a device; use cpu, cuda, cuda:N, mps or auto",
             "xla": "--device xla: charlm runs on cpu, cuda, cuda:N, mps or auto"}
    if not torch.cuda.is_available():
        cases["cuda"] = "--device cuda: no CUDA device is available"
    else:
        cases["cuda:99"] = f"--device cuda:99: this machine has {torch.cuda.device_count()} CUDA device"
    if not (torch.backends.mps.is_available()):
        cases["mps"] = "--device mps: Apple's MPS is not available"
    for device, message in cases.items():
        out = charlm_main(*base, "--device", device)
        line = assert_one_line(out, message)
        assert "checkpoint" not in line  # not "not a readable checkpoint (truncated or corrupted?)"


# --- 20: numbers at their edges --------------------------------------------------------------------
def test_tiny_temperatures_and_top_p_are_greedy_not_nan():
    logits = torch.tensor([[2.0, 5.0, 5.0 - 1e-6, -3.0], [0.1, -1.0, 0.3, 0.2]])  # (N, V)
    greedy = logits.argmax(-1)
    generator = torch.Generator().manual_seed(0)
    for temperature in (1e-300, 5e-324, 1e-45, 1e-8):
        for _ in range(20):
            assert torch.equal(sample_next(logits, temperature, generator=generator), greedy), temperature
    for top_p in (1e-300, 1e-9):
        assert torch.equal(sample_next(logits, 1.0, top_p=top_p, generator=generator), greedy)
    huge = sample_next(logits, 1e300, generator=generator)  # uniform, and still a valid draw
    assert huge.shape == (2,) and bool((huge >= 0).all() and (huge < 4).all())


def test_sample_edges_through_the_command(tiny_checkpoint, tmp_path, charlm_main):
    base = ["sample", "--ckpt_path", tiny_checkpoint, "--prompt", "ROMEO:", "--length", "60", "--device", "cpu"]
    greedy = charlm_main(*base, "--temperature", "0")
    for extra in (["--temperature", "1e-300"], ["--top_p", "1e-300", "--seed", "3"]):
        out = charlm_main(*base, *extra)
        assert out.returncode == 0 and out.stdout == greedy.stdout, (extra, out.stderr)
    cases = {
        ("--num_samples", "1000000000"): ["--num_samples 1000000000", "GiB", "fewer samples"],
        ("--seed", "-1"): ["--seed must lie in [0, 2^64), got -1"],
        ("--seed", str(2**64)): ["--seed must lie in [0, 2^64)"],
        ("--top_p", "nan"): ["--top_p", "nan"],
    }
    for extra, words in cases.items():
        assert_one_line(charlm_main(*base, *extra), *words)
    unknown = tmp_path / "prompt.bin"
    unknown.write_bytes(bytes([0xFE, 0x00]))
    out = charlm_main("sample", "--ckpt_path", tiny_checkpoint, "--prompt_file", unknown, "--device", "cpu")
    assert_one_line(out, "--prompt_file: ")  # the flag that brought the bytes, not --prompt


def test_a_diverged_checkpoint_is_refused_by_name(tiny_checkpoint, tmp_path, charlm_main):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["state_dict"]["model.head.bias"][:] = float("nan")
    diverged = tmp_path / "diverged.ckpt"
    torch.save(ckpt, diverged)
    for command in (["sample"], ["score", "--text", "hello"]):
        out = charlm_main(*command, "--ckpt_path", diverged)
        assert_one_line(out, f"--ckpt_path: {diverged}", "not finite", "earlier checkpoint")


def test_visualize_out_and_max_bytes(tiny_checkpoint, tmp_path, shakespeare_path, charlm_main):
    base = ["visualize", "--ckpt_path", tiny_checkpoint, "--text_file", shakespeare_path]
    folder = tmp_path / "pages"
    folder.mkdir()
    assert_one_line(charlm_main(*base, "--out", folder), f"--out {folder} is a folder", str(folder / "visualize.html"))
    assert list(tmp_path.iterdir()) == [folder] and not list(folder.iterdir())  # no stray pages.tmp
    through_a_file = shakespeare_path / "page.html"
    assert_one_line(charlm_main(*base, "--out", through_a_file), f"{shakespeare_path} is a file, not a folder")
    for value in ("0", "-3", "1000000"):
        assert_one_line(charlm_main(*base, "--max_bytes", value), "--max_bytes must lie in [1, 100,000]", value)
    out = charlm_main(*base, "--out", folder / "one.html", "--max_bytes", "1")
    assert out.returncode == 0 and (folder / "one.html").is_file(), out.stderr


def test_a_failed_page_write_is_one_line_and_keeps_the_old_page(tiny_checkpoint, tmp_path, shakespeare_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) stops the page at 4 KB."""
    page = tmp_path / "page.html"
    page.write_text("the previous page")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = start("visualize", "--ckpt_path", str(tiny_checkpoint), "--text_file", str(shakespeare_path),
                 "--out", str(page), "--overwrite", preexec_fn=limit)
    stdout, stderr = proc.communicate(timeout=120)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), stderr.decode())
    assert_one_line(out, f"could not write {page}", "ulimit -f")
    assert page.read_text() == "the previous page"
    assert os.listdir(tmp_path) == ["page.html"]  # the temporary file is gone


def test_visualize_out_a_pipe_or_a_link_writes_through_it(tiny_checkpoint, tmp_path, shakespeare_path, charlm_main):
    """--out /dev/stdout, a FIFO or a symlink: the page goes where the name points, and the name
    stays what it was (the atomic rename used to put a regular file in its place: as root,
    `--out /dev/full` replaced the device node and reported success)."""
    import stat
    import threading

    base = ["visualize", "--ckpt_path", tiny_checkpoint, "--text_file", shakespeare_path, "--max_bytes", "50"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    out = charlm_main(*base, "--out", fifo)
    assert out.returncode == 0, out.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe, not a file put in its place
    reader.join()
    assert got[0].startswith(b"<!DOCTYPE html>") or b"<html" in got[0][:200]

    real = tmp_path / "pages" / "real.html"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    out = charlm_main(*base, "--out", link, "--overwrite")
    assert out.returncode == 0, out.stderr
    assert link.is_symlink() and "<html" in real.read_text()[:200]
    assert sorted(os.listdir(tmp_path)) == ["link.html", "pages", "pipe"] and os.listdir(real.parent) == ["real.html"]


def test_finite_weights_too_large_to_sample_are_one_line(tiny_checkpoint, tmp_path, charlm_main):
    """Finite weights (x 1e36) whose outputs are inf: sample said "probability tensor contains
    either `inf`, `nan` or element < 0" in a traceback."""
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    for name, weights in ckpt["state_dict"].items():
        if torch.is_floating_point(weights):
            ckpt["state_dict"][name] = weights * 1e36
    huge = tmp_path / "huge.ckpt"
    torch.save(ckpt, huge)
    out = charlm_main("sample", "--ckpt_path", huge, "--length", "20")
    assert_one_line(out, "not finite", "earlier checkpoint")
