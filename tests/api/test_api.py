"""The Python front door against the commands: the same bytes for the same seed, the same numbers, the same
one-line errors (raised), and `charlm.train` as `charlm fit`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import charlm
from tests.cli_runs import small_run
from tests.conftest import REPO

CHARLM_ERROR = "charlm: error: "


@pytest.fixture(scope="module")
def model(tiny_checkpoint) -> charlm.Model:
    return charlm.load(tiny_checkpoint)


def test_import_charlm_loads_no_torch():
    code = "import sys, charlm; print('torch' in sys.modules, charlm.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.split() == ["False", charlm.__version__], out.stderr


def test_sample_writes_the_bytes_the_command_writes(model, tiny_checkpoint, charlm_main):
    text = model.sample("ROMEO:", length=200, temperature=0.8, seed=1)
    out = charlm_main("sample", "--ckpt_path", tiny_checkpoint, "--prompt", "ROMEO:", "--length", "200", "--seed", "1")
    assert out.returncode == 0 and out.stdout == "ROMEO:" + text + "\n"
    several = model.sample("ROMEO:", length=50, num_samples=4, seed=3)
    out = charlm_main("sample", "--ckpt_path", tiny_checkpoint, "--prompt", "ROMEO:", "--length", "50", "--seed", "3",
                      "--num_samples", "4")
    assert out.stdout == "".join(f"===== sample {i}/4 =====\nROMEO:{t}\n" for i, t in enumerate(several, 1))
    assert model.sample("ROMEO:", length=50, seed=1) != model.sample("ROMEO:", length=50, seed=2)


def test_beam_finds_what_the_command_prints(model, tiny_checkpoint, charlm_main):
    beams = model.beam("JULIET:", length=30, beam=4, num_samples=2)
    out = charlm_main("sample", "--ckpt_path", tiny_checkpoint, "--prompt", "JULIET:", "--length", "30", "--beam", "4",
                      "--num_samples", "2")
    parts = re.split(r"^===== beam \d/2: ([\d.]+) bpc =====\nJULIET:", out.stdout, flags=re.M)[1:]
    printed = [(float(parts[i]), parts[i + 1].removesuffix("\n")) for i in range(0, len(parts), 2)]
    assert [(round(b.bpc, 4), b.text) for b in beams] == printed


def test_score_and_trace_agree_with_the_command(model, tiny_checkpoint, charlm_main, shakespeare_path):
    text = shakespeare_path.read_bytes()[-2000:]
    out = charlm_main("score", "--ckpt_path", tiny_checkpoint, "--text", text.decode())
    printed = float(out.stdout.split()[0])
    bpc = model.score(text)
    assert round(bpc, 4) == printed
    traced = model.trace(text)
    assert traced.hidden.shape[:2] == (1, len(text)) and traced.top_ids.shape == (len(text), 5)
    assert traced.surprise.mean() == pytest.approx(bpc, rel=1e-4)  # one pass, the same numbers


def test_errors_are_the_commands_lines_raised(model, tiny_checkpoint, charlm_main, tmp_path):
    out = charlm_main("sample", "--ckpt_path", tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError) as raised:
        charlm.load(tmp_path / "nope.ckpt")
    assert CHARLM_ERROR + str(raised.value) == out.stderr.strip()
    out = charlm_main("sample", "--ckpt_path", tiny_checkpoint, "--prompt", "K€")
    with pytest.raises(ValueError, match="the model's vocabulary lacks") as raised:
        model.sample("K€")
    assert CHARLM_ERROR + str(raised.value) == out.stderr.strip()
    assert model.sample("K€a", unknown="skip", length=5, seed=0) == charlm_main(
        "sample", "--ckpt_path", tiny_checkpoint, "--prompt", "K€a", "--unknown", "skip", "--length", "5", "--seed",
        "0", "--no_echo_prompt").stdout.removesuffix("\n")


def test_export_writes_what_the_command_writes_and_keeps_what_exists(model, tiny_checkpoint, tmp_path, charlm_main):
    path = model.export(tmp_path / "m.pt", format="torchscript")
    assert charlm_main("export", "--ckpt_path", tiny_checkpoint, "--output", tmp_path / "c.pt", "--format",
                       "torchscript").returncode == 0
    assert extra_files(path) == extra_files(tmp_path / "c.pt")  # the same network, vocabulary and signature
    with pytest.raises(ValueError, match="already exists"):
        model.export(path, format="torchscript")
    with pytest.raises(ValueError, match="is the checkpoint"):
        model.export(tiny_checkpoint, format="torchscript", overwrite=True)
    assert model.export(path, format="torchscript", overwrite=True) == path


def extra_files(path) -> dict[str, str]:
    """A TorchScript export's charlm metadata, but the path of the checkpoint it came from."""
    import json
    import warnings

    import torch

    found = dict.fromkeys(("charlm.vocab", "charlm.model_config", "charlm.signature"), "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), _extra_files=found)
    assert json.loads(found["charlm.vocab"])
    return found


def test_fit_runs_fit_and_loads_its_best_checkpoint(tmp_path, shakespeare_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = small_run(shakespeare_path)  # the flags of the tests' small run, as sections
    settings: dict[str, dict] = {}
    for flag, value in zip(args[3::2], args[4::2], strict=True):
        section, key = flag.removeprefix("--").split(".", 1)
        settings.setdefault(section, {})[key] = value
    settings["trainer"].update(max_steps=6, val_check_interval=3, limit_val_batches=2, logger=False)
    m = charlm.fit(REPO / "cli.yaml", **settings)
    assert m.path.name.startswith("best-step6-") and m.path.is_file()
    assert m.config.hidden_size == 64 and len(m.sample(length=10, seed=0)) == 10
    assert "charlm: fit finished at step 6." in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"did you mean --model.hidden_size\?"):
        charlm.fit(model={"hiden_size": 3})
    with pytest.raises(ValueError, match="no section 'modle'"):
        charlm.fit(modle={"cell": "gru"})
