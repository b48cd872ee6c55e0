"""The neuron page logged during training: local files and a real (offline) W&B run."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.cli_runs import run_in, small_run, with_callback

CHARACTER = re.compile(r'<a class="v\d+"')  # one per character of a panel (charlm.infer.neuron_page)


@pytest.mark.slow
def test_pages_in_the_run_folder_and_in_wandb(tmp_path, shakespeare_path):
    from charlm.cli.commands.visualize import visualize

    passage = tmp_path / "passage.txt"
    passage.write_bytes(shakespeare_path.read_bytes()[-700:])
    args = small_run(shakespeare_path, "--trainer.max_steps", "60", "--trainer.val_check_interval", "20",
                     "--trainer.limit_val_batches", "2", "--trainer.callbacks=[]",
                     *with_callback("charlm.callbacks.VisualizeNeurons", every_n_validations=2,
                                    text_file=passage, neuron=3),
                     *with_callback("charlm.callbacks.VisualizeNeurons", key="val_neurons", max_bytes=300,
                                    guesses="false"),
                     *with_callback("lightning.pytorch.callbacks.ModelCheckpoint", dirpath=tmp_path / "every20",
                                    every_n_train_steps=20, save_top_k=-1))  # the model each page should show
    cli = run_in(tmp_path, args)

    # three validations (steps 20, 40, 60): the first callback renders every second one, and the final
    # model when training ends; the other renders after each one (the end adds nothing: step 60 is done)
    pages = sorted(p.name for p in tmp_path.glob("runs/shakespeare/version_0/neurons/*.html"))
    assert pages == ["step-40.html", "step-60.html"]
    page = (tmp_path / "runs/shakespeare/version_0/neurons/step-40.html").read_text()
    assert "Step 40 of training, reading " in page and "hidden state, layer 0, unit 3" in page
    assert "best for position in line" in page and len(CHARACTER.findall(page)) > 600
    val_pages = sorted(p.name for p in tmp_path.glob("runs/shakespeare/version_0/val_neurons/*.html"))
    assert val_pages == ["step-20.html", "step-40.html", "step-60.html"]
    assert 'class="g"' not in (tmp_path / "runs/shakespeare/version_0/val_neurons/step-60.html").read_text()

    # what a page proves: the page of step N is the one `charlm visualize` writes for the checkpoint of step N
    # on the same text (only the line naming the source differs), so it shows neither an earlier nor a later
    # model, and its ranking table lists that model's neurons; steps 40 and 60: a validation's page, the end's
    val_text = tmp_path / "val.txt"
    val_text.write_bytes(cli.datamodule.vocab.decode(cli.datamodule.splits["val"][:300].tolist()))
    cases = [("neurons", 40, passage, {"neuron": 3}, f"reading {passage}"),
             ("neurons", 60, passage, {"neuron": 3}, f"reading {passage}"),
             ("val_neurons", 20, val_text, {"guesses": False}, "reading the validation text")]
    for key, step, text, options, reading in cases:
        ckpt = next((tmp_path / "every20").glob(f"*step={step}.ckpt"))
        written = visualize(str(ckpt), str(text), str(tmp_path / f"{key}-{step}.html"), find=True, **options)
        expected = written.read_text().replace(html.escape(f"Checkpoint {ckpt}"),
                                               html.escape(f"Step {step} of training, {reading}"))
        assert expected != written.read_text()  # the source line was found and replaced
        assert (tmp_path / f"runs/shakespeare/version_0/{key}/step-{step}.html").read_text() == expected
    assert page != (tmp_path / "runs/shakespeare/version_0/neurons/step-60.html").read_text()  # the model moved on

    # the same pages inside the W&B run, and the ranked neurons as a growing table
    run_dir = next(tmp_path.glob("runs/wandb/offline-run-*"))
    html_media = list(run_dir.glob("files/media/html/neurons/page_*.html"))
    assert len(html_media) == 2 and page in [m.read_text() for m in html_media]
    assert len(list(run_dir.glob("files/media/html/val_neurons/page_*.html"))) == 3
    tables = [json.loads(f.read_text()) for f in run_dir.glob("files/media/table/val_neurons/ranking_*.table.json")]
    rows = [row for t in tables for row in t["data"]]
    assert tables[0]["columns"] == ["global_step", "feature", "state", "layer", "unit", "r"]
    assert {r[0] for r in rows} == {20, 40, 60} and all(-1 <= r[5] <= 1 for r in rows)
    assert "position in line" in {r[1] for r in rows}  # the validation text has no quotes or brackets


@pytest.mark.parametrize(("init", "extra", "message"), [
    ("neuron=64", [], "neuron must be in \\[0, 63\\]"),
    ("state=cell", [], None),  # fine for the LSTM of cli.yaml ...
    ("state=cell", ["--model.cell", "gru"],
     "VisualizeNeurons state cell needs an LSTM; .* use VisualizeNeurons state hidden"),
    ("text_file=missing.txt", [], "text_file: .*missing.txt does not exist"),
    ("text_file=code.txt", [], "'\\{' \\(0x7b\\).*written with the corpus's characters"),
])
def test_bad_settings_fail_before_training(tmp_path, shakespeare_path, init, extra, message):
    (tmp_path / "code.txt").write_text("x = {a: b}")
    key, value = init.split("=")
    args = small_run(shakespeare_path, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", *extra,
                     "--trainer.callbacks=[]", *with_callback("charlm.callbacks.VisualizeNeurons", **{key: value}))
    if message is None:
        assert run_in(tmp_path, args).trainer.global_step == 2  # it trained
        return
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_in(tmp_path, args)
    assert not list(tmp_path.glob("runs/shakespeare/version_0/checkpoints/*.ckpt"))


def test_without_a_charlm_data_module_it_asks_for_a_text_file(tmp_path):
    import lightning as L

    from charlm.callbacks.visualize_neurons import VisualizeNeurons
    from charlm.train.lightning_module import CharLM

    trainer = L.Trainer(default_root_dir=tmp_path, logger=False)  # e.g. fit(model, train_dataloaders=...)
    with pytest.raises(ValueError, match="give it text_file"):
        VisualizeNeurons().setup(trainer, CharLM(vocab=[10, 97, 98]), "fit")
    passage = tmp_path / "p.txt"
    passage.write_bytes(b"ab\nba\n")
    VisualizeNeurons(text_file=str(passage)).setup(trainer, CharLM(vocab=[10, 97, 98]), "fit")  # fine with one
