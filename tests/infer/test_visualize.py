"""`charlm visualize`: per-step activations through the same weights, neuron ranking, the page."""

import re

import numpy as np
import pytest
import torch

from charlm.checkpoint import load_checkpoint
from charlm.cli.commands.visualize import visualize
from charlm.infer.neurons import features, rank_neurons, trace

CHARACTER = re.compile(r'<a class="v\d+"')  # one per character of a panel (charlm.infer.neuron_page)


def test_stepwise_activations_equal_the_fused_forward(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    data = b"ROMEO:\nIs the day so young?\n"
    tr = trace(loaded.model, loaded.vocab, data)
    ids = torch.as_tensor(loaded.vocab.encode(data), dtype=torch.long)[None]
    with torch.inference_mode():
        x = loaded.model.embed(ids)
        out, (h, c) = loaded.model.rnn(x)  # the fused path: top layer at every step, all layers at the end
        probs = loaded.model.head(out)[0].softmax(-1)
    np.testing.assert_allclose(tr.hidden[-1], out[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tr.hidden[:, -1], h[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tr.cell[:, -1], c[:, 0].numpy(), atol=1e-5)
    assert np.array_equal(tr.top_ids[:, 0], probs.argmax(-1).numpy())


def test_features_of_a_known_text():
    f = features(b'if (a[1]) {\n  s = "x(y";\n}\n')
    assert f["bracket depth"][:12].tolist() == [0, 0, 0, 1, 1, 2, 2, 1, 0, 0, 1, 1]
    assert f["inside quotes"][b'if (a[1]) {\n  s = "x(y";\n}\n'.index(b"x")] == 1
    assert f["indentation"][14] == 2 and f["position in line"][12] == 1


def test_ranking_finds_a_neuron_that_tracks_a_feature():
    rng = np.random.default_rng(0)
    feats = {"bracket depth": rng.integers(0, 4, 500).astype(float)}
    hidden = rng.standard_normal((2, 500, 16))
    hidden[1, :, 7] = np.tanh(feats["bracket depth"] - 1.5) + rng.standard_normal(500) * 0.05  # the planted one
    best = rank_neurons({"hidden": hidden}, feats)["bracket depth"][0]
    assert best[:3] == ("hidden", 1, 7) and best[3] > 0.9


def test_page_has_the_chosen_and_found_neurons(tiny_checkpoint, tmp_path, shakespeare_path):
    text = tmp_path / "passage.txt"
    text.write_bytes(shakespeare_path.read_bytes()[-1500:])
    page = visualize(str(tiny_checkpoint), str(text), out=str(tmp_path / "v.html"), state="cell", neuron=5, find=True)
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "cell state, layer 0, unit 5" in html
    assert "best for position in line" in html and len(CHARACTER.findall(html)) >= 1400  # a cell per character
    assert "<script src" not in html and "http" not in html.split("<body>")[1]  # self-contained


@pytest.mark.parametrize(("kwargs", "message"), [({"neuron": 64}, "--neuron must be in"),
                                                  ({"layer": 3}, "--layer must be in")])
def test_bad_arguments(tiny_checkpoint, tmp_path, kwargs, message):
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be")
    with pytest.raises(ValueError, match=message):
        visualize(str(tiny_checkpoint), str(text), out=str(tmp_path / "v.html"), **kwargs)


def test_empty_and_unknown_text(tiny_checkpoint, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        visualize(str(tiny_checkpoint), str(tmp_path / "empty.txt"), out=str(tmp_path / "v.html"))
    (tmp_path / "code.txt").write_text("x = {a: b}  # to be")
    with pytest.raises(ValueError, match=r"'\{' \(0x7b\).*--unknown skip"):
        visualize(str(tiny_checkpoint), str(tmp_path / "code.txt"), out=str(tmp_path / "v.html"))
    assert not (tmp_path / "v.html").exists()  # nothing half-written
    page = visualize(str(tiny_checkpoint), str(tmp_path / "code.txt"), out=str(tmp_path / "v.html"), unknown="skip")
    assert len(CHARACTER.findall(page.read_text())) == len("x = a: b  to be")  # "{", "}" and "#" left out


def test_page_renders_in_headless_chromium(tiny_checkpoint, tmp_path, shakespeare_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium)")
    text = tmp_path / "passage.txt"
    text.write_bytes(shakespeare_path.read_bytes()[:600])
    page = visualize(str(tiny_checkpoint), str(text), out=str(tmp_path / "v.html"), find=True)
    shot = tmp_path / "v.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", f"--screenshot={shot}",
                    page.resolve().as_uri()], capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000  # a page of coloured text, not a blank one
