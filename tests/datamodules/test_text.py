"""Your own text: files, folders, globs, binary files, and Hugging Face datasets from local files."""

import pytest

from datamodules import TextDataModule
from tests.cli_runs import run_python

SMALL = {"batch_size": 1, "seq_len": 4, "eval_batch_size": 1, "val_fraction": 0.1, "test_fraction": 0.1}


def corpus_bytes(dm) -> bytes:
    dm.setup("fit")
    return b"".join(dm.vocab.decode(s.tolist()) for s in dm.splits.values())


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "b.py").write_text("print('b')\n")
    (root / "pkg" / "a.py").write_text("def a():\n    return 1\n")
    (root / "pkg" / "sub" / "c.py").write_text("# c\n")
    (root / "README.md").write_text("# Project\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    return root


def test_single_file(tmp_path):
    (tmp_path / "poem.txt").write_text("Tyger Tyger, burning bright,\nIn the forests of the night\n" * 10)
    poem = tmp_path / "poem.txt"
    assert corpus_bytes(TextDataModule(path=str(poem), **SMALL)) == poem.read_bytes()


def test_folder_skips_binary_files_with_a_warning(project):
    with pytest.warns(UserWarning, match=r"Skipped 1 binary files.*logo.png"):
        text = corpus_bytes(TextDataModule(path=str(project), **SMALL))
    assert text == b"# Project\n" + b"print('b')\n" + b"def a():\n    return 1\n" + b"# c\n"  # path order
    with pytest.raises(ValueError, match=r"binary files, e\.g\. .*logo\.png"):
        TextDataModule(path=str(project), binary="error", **SMALL).prepare_data()


def test_glob_and_extensions(project):
    text = corpus_bytes(TextDataModule(path=str(project / "**" / "*.py"), separator="\n#---\n", **SMALL))
    assert text == b"print('b')\n\n#---\ndef a():\n    return 1\n\n#---\n# c\n"
    by_ext = corpus_bytes(TextDataModule(path=str(project), extensions=[".py"], separator="\n#---\n", **SMALL))
    assert by_ext.count(b"#---") == 2


def test_nothing_matches(project):
    with pytest.raises(FileNotFoundError, match=r"--data.path: .*\*\.rs matches no files"):
        TextDataModule(path=str(project / "**" / "*.rs"), **SMALL).prepare_data()
    with pytest.raises(FileNotFoundError, match="not a file, a folder or a glob"):
        TextDataModule(path=str(project / "missing.txt"), **SMALL).prepare_data()
    with pytest.raises(FileNotFoundError, match=r"matches no files ending in \.rs"):
        TextDataModule(path=str(project), extensions=[".rs"], **SMALL).prepare_data()


def test_huggingface_parquet_dataset(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [f"Row {i}: caf\u00e9 \u2014 {i * i}" for i in range(500)]
    pq.write_table(pa.table({"id": list(range(500)), "content": rows}), tmp_path / "data.parquet")
    dm = TextDataModule(dataset="parquet", data_files=str(tmp_path / "data.parquet"), text_column="content",
                        cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == "\n".join(rows).encode()
    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['id', 'content'\]"):
        TextDataModule(dataset="parquet", data_files=str(tmp_path / "data.parquet"), cache_dir=str(tmp_path / "c"),
                       **SMALL).prepare_data()


def test_huggingface_text_builder(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n")
    dm = TextDataModule(dataset="text", data_files=str(tmp_path / "a.txt"), cache_dir=str(tmp_path / "c"), **SMALL)
    assert corpus_bytes(dm) == b"first line\nsecond line"


def test_unreachable_hub_dataset_is_a_clear_error(tmp_path):
    # a fresh process, so HF_HUB_OFFLINE is read when datasets is imported (as for a user who sets it)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (f"from datamodules import TextDataModule; "
            f"TextDataModule(dataset='someone/no-such-corpus', cache_dir={str(tmp_path / 'c')!r}).prepare_data()")
    out = run_python("-c", code, env=env, timeout=120)
    assert out.returncode != 0
    assert "--data.dataset: could not load 'someone/no-such-corpus'" in out.stderr
    assert "needs the network the first time" in out.stderr


def test_exactly_one_source():
    with pytest.raises(ValueError, match=r"exactly one of --data\.path"):
        TextDataModule()


# --- issue 20 item 10: a --data.dataset setting of the wrong type or meaning is one line naming the flag ---------
@pytest.fixture
def numbers_and_text(tmp_path):
    """A parquet file with a text column and a column of integers."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "data" / "rows.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"n": list(range(300)), "text": [f"row {i}" for i in range(300)]}), path)
    return path


@pytest.mark.parametrize("streaming", [False, True])
def test_a_column_that_is_not_text_is_refused_naming_the_flag(numbers_and_text, tmp_path, streaming):
    dm = TextDataModule(dataset="parquet", data_files=str(numbers_and_text), text_column="n", streaming=streaming,
                        cache_dir=str(tmp_path / "c"), **SMALL)
    with pytest.raises(ValueError, match=r"^--data\.text_column: column 'n' of 'parquet' holds int64") as err:
        dm.prepare_data()
    assert "['n', 'text']" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("flags", "message"), [
    ({"text_column": 3}, r"^--data\.text_column: expected the name of a column \(a string\), got 3 \(int\)"),
    ({"text_column": ""}, r"^--data\.text_column: expected the name of a column"),
    ({"split": 0}, r"^--data\.split: expected the name of a split"),
    ({"data_files": 7}, r"^--data\.data_files: expected a file, a glob or a list of them, got 7 \(int\)"),
    ({"data_files": ["a.parquet", 7]}, r"^--data\.data_files: expected a file, a glob or a list of them"),
])
def test_flags_of_the_wrong_type_are_refused_at_once(flags, message):
    with pytest.raises(ValueError, match=message):
        TextDataModule(dataset="parquet", **{"data_files": "x.parquet", **flags})


@pytest.mark.parametrize("builder", ["parquet", "csv", "json", "text"])
def test_a_builder_without_data_files_is_refused(builder, tmp_path, monkeypatch, numbers_and_text):
    monkeypatch.chdir(numbers_and_text.parent)  # datasets would read whatever files the current folder holds
    with pytest.raises(ValueError, match=rf"^--data\.dataset {builder} reads local files: give them with "
                                         rf"--data\.data_files") as err:
        TextDataModule(dataset=builder, cache_dir=str(tmp_path / "c"), **SMALL).prepare_data()
    assert "./" + builder in str(err.value)  # and how to name a folder of that name


def test_data_files_that_match_nothing_name_the_flag(numbers_and_text, tmp_path):
    for files in (str(tmp_path / "nope-*.parquet"), [str(numbers_and_text), str(tmp_path / "gone.parquet")]):
        dm = TextDataModule(dataset="parquet", data_files=files, cache_dir=str(tmp_path / "c"), **SMALL)
        with pytest.raises(FileNotFoundError, match=r"^--data\.data_files: .*(nope-\*|gone)\.parquet matches no "
                                                    r"file") as err:
            dm.prepare_data()
        assert "network" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_split_that_does_not_exist_names_the_flag_and_the_splits(numbers_and_text, tmp_path, streaming):
    dm = TextDataModule(dataset="parquet", data_files=str(numbers_and_text), split="validation", streaming=streaming,
                        cache_dir=str(tmp_path / "c"), **SMALL)
    with pytest.raises(ValueError, match=r"^--data\.split: 'parquet' has no split 'validation'; its splits are "
                                         r"\['train'\]") as err:
        dm.prepare_data()
    assert "\n" not in str(err.value)


def test_an_attribute_error_while_preparing_is_not_taken_for_a_missing_vocabulary(tmp_path):
    # jsonargparse reads the link source data.vocab_symbols with hasattr(): an AttributeError raised inside made
    # the link silently skipped, and the run ended in CharLM's "missing 1 required positional argument: 'vocab'"
    from datamodules.base import CharDataModule

    class Broken(CharDataModule):
        def _corpus(self):
            return None.chunks  # a bug of the kind: an AttributeError while preparing

    with pytest.raises(RuntimeError, match=r"preparing the corpus failed: AttributeError: 'NoneType'"):
        hasattr(Broken(cache_dir=str(tmp_path)), "vocab_symbols")


@pytest.mark.parametrize(("flags", "words"), [
    (["--data.text_column", "n"], ["--data.text_column: column 'n' of 'parquet' holds int64"]),
    (["--data.split", "test"], ["--data.split: 'parquet' has no split 'test'"]),
])
def test_bad_dataset_flags_are_one_line_from_the_command(flags, words, numbers_and_text, tmp_path):
    from tests.cli_runs import assert_one_line, charlm

    out = charlm("fit", "--data", "TextDataModule", "--data.dataset", "parquet", "--data.data_files",
                 str(numbers_and_text), *flags, "--trainer.max_steps", "1", cwd=tmp_path, cache=tmp_path / "c",
                 env={"HF_DATASETS_CACHE": str(tmp_path / "hf"), "WANDB_MODE": "disabled"})
    assert_one_line(out, *words)
    assert "vocab" not in out.stderr


@pytest.fixture
def two_configs(tmp_path):
    """A local dataset folder whose card declares two configurations, a and b."""
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: a\n  data_files: a.jsonl\n"
                                      "- config_name: b\n  data_files: b.jsonl\n---\n")
    for name in "ab":
        (folder / f"{name}.jsonl").write_text("".join(f'{{"text": "{name} row {i}"}}\n' for i in range(50)))
    return folder


@pytest.mark.parametrize(("config", "message"), [
    ("nope", r"^--data\.dataset_config: '.*two' has no configuration 'nope'; its configurations are \['a', 'b'\]\.$"),
    (None, r"^--data\.dataset_config: '.*two' has several configurations, \['a', 'b'\]; choose one with "),
])
@pytest.mark.parametrize("streaming", [False, True])
def test_a_configuration_that_does_not_exist_names_the_flag(two_configs, tmp_path, config, message, streaming):
    dm = TextDataModule(dataset=str(two_configs), dataset_config=config, streaming=streaming,
                        cache_dir=str(tmp_path / "c"), **SMALL)
    with pytest.raises(ValueError, match=message):
        dm.prepare_data()
    b = TextDataModule(dataset=str(two_configs), dataset_config="b", streaming=streaming, cache_dir=str(tmp_path / "c"),
                       **SMALL)
    assert corpus_bytes(b).startswith(b"b row 0\nb row 1\n")


@pytest.mark.parametrize(("flags", "message"), [
    ({"path": 3}, r"^--data\.path: expected a file, folder or glob \(a string\), got 3\.$"),
    ({"extensions": ".py"}, r"^--data\.extensions: expected a list of strings, e.g\. \[\.py\], got '\.py'\.$"),
    ({"skip_folders": ".git"}, r"^--data\.skip_folders: expected a list of strings"),
    ({"binary": "keep"}, r"^--data\.binary: expected skip, error or include, got 'keep'\.$"),
    ({"separator": 0}, r"^--data\.separator: expected a string, got 0 \(int\)\.$"),
])
def test_file_flags_of_the_wrong_type_are_refused_at_once(flags, message):
    with pytest.raises(ValueError, match=message):
        TextDataModule(**{"path": "corpus.txt", **flags})
