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
