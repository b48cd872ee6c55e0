"""--data.streaming and --data.max_bytes: a Hugging Face dataset written to the token file in one
pass, and a slice of a corpus; the prepared folder's name, and the copy prepared before used when the
dataset cannot be resolved. Local datasets only (parquet and JSON Lines files in tmp_path): no network."""

import hashlib
import json
import time

import pytest

from datamodules import TextDataModule
from datamodules.common.errors import CacheWriteError, CorpusUnavailableError
from datamodules.sources.byte_limit import ByteLimit, parse_byte_size
from tests.cli_runs import assert_one_line, charlm, run_python

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SMALL = {"batch_size": 1, "seq_len": 4, "eval_batch_size": 1, "val_fraction": 0.1, "test_fraction": 0.1}
# 1-, 2-, 3- and 4-byte UTF-8 characters, and an empty row (None)
ROWS = [f"Row {i}: caf\u00e9 \u2014 {i * i} \U0001f600" if i % 7 else None for i in range(600)]
WHOLE = "\n".join(r or "" for r in ROWS).encode()


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """The datasets cache of this test (as HF_DATASETS_CACHE would set it), not ~/.cache/huggingface."""
    import datasets

    cache = tmp_path / "hf"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)  # read by each load, unlike the variable
    return cache


@pytest.fixture
def parquet_files(tmp_path):
    """The rows in two parquet files, with a column of numbers and another of text."""
    paths = [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"]
    for path, rows in zip(paths, (ROWS[:250], ROWS[250:]), strict=True):
        pq.write_table(pa.table({"id": list(range(len(rows))), "text": rows,
                                 "title": [f"t{i}" for i in range(len(rows))]}), path)
    return [str(p) for p in paths]


@pytest.fixture
def jsonl_folder(tmp_path):
    """The rows as a folder of JSON Lines files, loaded by path (--data.dataset /that/folder)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, rows in (("a.jsonl", ROWS[:300]), ("b.jsonl", ROWS[300:])):
        (folder / name).write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
    return str(folder)


def prepared(**kwargs):
    dm = TextDataModule(**SMALL, **kwargs)
    dm.prepare_data()
    return dm.prepared_dir


def tokens_and_vocab(folder):
    return (folder / "tokens.u8").read_bytes(), (folder / "vocab.json").read_bytes()


def corpus_of(folder) -> bytes:
    from datamodules.io.prepare import load_tokens

    tokens, vocab = load_tokens(folder)
    return vocab.decode(tokens.tolist())


@pytest.mark.parametrize("max_bytes", [None, 5000])
@pytest.mark.parametrize("source", ["parquet", "folder"])
def test_streaming_writes_the_same_token_file(source, max_bytes, parquet_files, jsonl_folder, tmp_path):
    args = {"dataset": "parquet", "data_files": parquet_files} if source == "parquet" else {"dataset": jsonl_folder}
    whole = prepared(**args, max_bytes=max_bytes, cache_dir=str(tmp_path / "a"))
    streamed = prepared(**args, max_bytes=max_bytes, streaming=True, cache_dir=str(tmp_path / "b"))
    assert tokens_and_vocab(streamed) == tokens_and_vocab(whole)
    expected = WHOLE if max_bytes is None else WHOLE[:max_bytes].decode("utf-8", "ignore").encode()
    assert corpus_of(streamed) == expected
    assert json.loads((streamed / "meta.json").read_text())["num_tokens"] == len(expected)


def test_no_arrow_copy_and_progress_on_stderr(parquet_files, tmp_path):
    # a real process, so that HF_DATASETS_CACHE is read as datasets starts, as for a user
    hf = tmp_path / "hf-child"
    code = (f"from datamodules import TextDataModule; TextDataModule(dataset='parquet', data_files={parquet_files!r}, "
            f"streaming=True, max_bytes='10kB', cache_dir={str(tmp_path / 'c')!r}).prepare_data()")
    out = run_python("-c", code, env={"HF_DATASETS_CACHE": str(hf), "HF_DATASETS_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Streaming parquet[train].text" in out.stderr and "/10.0k" in out.stderr  # the bar, with its total
    kept = len(WHOLE[:10_000].decode("utf-8", "ignore").encode())
    assert f"charlm: --data.max_bytes 10kB: the corpus parquet[train].text was cut at {kept:,} bytes" in out.stderr
    assert not [p for p in hf.rglob("*") if p.suffix == ".arrow" or p.name == "dataset_info.json"]
    assert not [p for p in hf.rglob("*") if p.is_file() and p.suffix != ".lock"], sorted(hf.rglob("*"))


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_max_bytes_cuts_before_the_character_that_crosses_the_limit(chunk, capsys):
    text = "a\u00e9\u2014\U0001f600b".encode() * 3  # 1 + 2 + 3 + 4 + 1 bytes, three times
    for limit in range(1, len(text) + 3):
        pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)]
        cut = b"".join(ByteLimit(limit, "t", limit).cut(pieces))
        assert cut == text[:limit].decode("utf-8", "ignore").encode(), (limit, chunk)  # the whole characters
        assert len(text[:limit]) - len(cut) <= 3
        said = capsys.readouterr().err
        assert (f"was cut at {len(cut):,} bytes" in said) == (limit < len(text)), (limit, said)


def test_max_bytes_stops_reading_one_byte_past_the_limit():
    read = []

    def chunks():
        for i in range(100):
            read.append(i)
            yield b"0123456789"

    assert b"".join(ByteLimit(25, "t", 25).cut(chunks())) == b"0123456789" * 2 + b"01234"
    assert read == [0, 1, 2]  # the 26th byte, in the third chunk, ends the reading


def test_a_slice_is_never_taken_for_the_whole(parquet_files, tmp_path, capsys):
    cache = str(tmp_path / "c")
    for streaming in (True, False):
        sliced = prepared(dataset="parquet", data_files=parquet_files, streaming=streaming, max_bytes="1KiB",
                          cache_dir=cache)
        whole = prepared(dataset="parquet", data_files=parquet_files, streaming=streaming, cache_dir=cache)
        assert sliced != whole
        assert corpus_of(sliced) == WHOLE[:1024].decode("utf-8", "ignore").encode()
        assert corpus_of(whole) == WHOLE
    assert capsys.readouterr().err.count("was cut at") == 2  # once per preparation, not per pass
    # another column is another corpus (the prepared folder's name said only the dataset and separator)
    pq.write_table(pa.table({"a": ["x" * 50] * 20, "b": ["y" * 50] * 20}), tmp_path / "ab.parquet")
    a, b = (prepared(dataset="parquet", data_files=str(tmp_path / "ab.parquet"), text_column=c, cache_dir=cache)
            for c in "ab")
    assert corpus_of(a).startswith(b"xxx") and corpus_of(b).startswith(b"yyy")


def test_max_bytes_slices_files_too(tmp_path):
    (tmp_path / "big.txt").write_bytes(WHOLE)
    sliced = prepared(path=str(tmp_path / "big.txt"), max_bytes=777, cache_dir=str(tmp_path / "c"))
    assert corpus_of(sliced) == WHOLE[:777].decode("utf-8", "ignore").encode()
    assert corpus_of(prepared(path=str(tmp_path / "big.txt"), cache_dir=str(tmp_path / "c"))) == WHOLE


def _big_then_damaged(tmp_path) -> list[str]:
    """2.4 MB of rows (more than one 1 MB write), then a parquet file cut short: the stream fails there."""
    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [f"line {i} " + "x" * 100 for i in range(24_000)]}), big)
    (tmp_path / "damaged.parquet").write_bytes(big.read_bytes()[:5000])
    return [str(big), str(tmp_path / "damaged.parquet")]


def test_a_stream_that_fails_midway_leaves_nothing(tmp_path):
    files = _big_then_damaged(tmp_path)
    dm = TextDataModule(dataset="parquet", data_files=files, streaming=True, cache_dir=str(tmp_path / "c"), **SMALL)
    with pytest.raises(CorpusUnavailableError, match=r"^--data.dataset: streaming 'parquet' failed after 24,000 rows: "
                       r"ArrowInvalid: .*Nothing was kept; run again") as err:
        dm.prepare_data()
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in dm.prepared_dir.iterdir()) == [".lock"]  # no tokens.u8, no temp file


def test_a_full_disk_while_streaming_leaves_nothing(tmp_path):
    # a real write failure (RLIMIT_FSIZE: EFBIG past 1.5 MB per file) in the middle of the token file
    files = _big_then_damaged(tmp_path)[:1]
    code = (f"from datamodules import TextDataModule; dm = TextDataModule(dataset='parquet', data_files={files!r}, "
            f"streaming=True, cache_dir={str(tmp_path / 'c')!r})\ntry: dm.prepare_data()\n"
            f"except Exception as e: print(type(e).__name__, e)\n"
            f"print(sorted(p.name for p in dm.prepared_dir.iterdir()))")
    out = run_python("-c", code, env={"HF_DATASETS_CACHE": str(tmp_path / "hf-child"), "HF_DATASETS_OFFLINE": "1"},
                     disk_full_at=1_500_000, timeout=120)
    assert f"{CacheWriteError.__name__} Could not write" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "tokens.u8: File too large" in out.stdout and "nothing half-written was kept" in out.stdout
    assert out.stdout.splitlines()[-1] == "['.lock']"


@pytest.mark.parametrize("value", [0, -5, "0MB", "5XB", "MB", "1e6", True])
def test_bad_max_bytes_is_refused_naming_the_flag(value, tmp_path):
    with pytest.raises(ValueError, match=r"^--data\.max_bytes must be") as err:
        TextDataModule(path=str(tmp_path), max_bytes=value)
    assert "\n" not in str(err.value)


def test_byte_sizes():
    assert [parse_byte_size(v) for v in (None, 1, "5000000", "5MB", "5 mb", "1.5GB", "64KiB", "2MiB", "3B")] == [
        None, 1, 5_000_000, 5_000_000, 5_000_000, 1_500_000_000, 65_536, 2_097_152, 3]


def test_streaming_needs_a_dataset_that_exists(tmp_path):
    with pytest.raises(ValueError, match=r"^--data\.streaming applies to --data\.dataset"):
        TextDataModule(path=str(tmp_path), streaming=True)
    dm = TextDataModule(dataset=str(tmp_path / "no-such-folder"), streaming=True, cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match=r"^--data\.dataset: could not stream '.*no-such-folder' "
                       r"\(--data\.streaming true, .*FileNotFoundError: .*no-such-folder\. ") as err:
        dm.prepare_data()
    assert "\n" not in str(err.value)


def test_bad_flags_are_one_line(tmp_path):
    # through the real entry point (the in-process tests above check the messages of the other bad values)
    out = charlm("fit", "--data", "TextDataModule", "--data.dataset", "/no/such/corpus", "--data.streaming", "true",
                 "--trainer.max_steps", "1", cwd=tmp_path,
                 env={"HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"})
    assert_one_line(out, "--data.dataset: could not stream '/no/such/corpus'", "--data.streaming true")


def test_default_settings_keep_the_folder_an_earlier_charlm_prepared(parquet_files, tmp_path):
    import datasets

    fingerprint = datasets.load_dataset("parquet", data_files=parquet_files, split="train")._fingerprint

    def before(separator: str) -> str:  # the prepared folder's name before --data.text_column and --data.max_bytes
        return f"dataset-{fingerprint}-{hashlib.sha256(separator.encode()).hexdigest()[:8]}"

    def key(**kwargs) -> str:
        return TextDataModule(dataset="parquet", data_files=parquet_files, cache_dir=str(tmp_path / "c"),
                              **kwargs).corpus.key

    assert key() == key(text_column="text") == before("\n")
    assert key(separator=" | ") == before(" | ") and key(separator="") == before("")
    others = {args: key(**dict(args)) for args in ((("text_column", "title"),), (("max_bytes", 5000),),
                                                   (("text_column", "title"), ("max_bytes", 5000)),
                                                   (("separator", " | "), ("max_bytes", 5000)))}
    assert len(set(others.values()) | {key(), key(separator=" | ")}) == len(others) + 2, others
    assert all(k.startswith(before(dict(a).get("separator", "\n")) + "-") for a, k in others.items())
    assert key(max_bytes="5kB") == others[(("max_bytes", 5000),)]  # the bytes taken decide, not their spelling


@pytest.mark.parametrize("streaming", [True, False])
def test_a_dataset_that_cannot_be_resolved_is_read_from_the_copy_prepared_before(streaming, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    files = [str(data / "part-0.parquet"), str(data / "part-1.parquet")]
    for path, rows in zip(files, (ROWS[:250], ROWS[250:]), strict=True):
        pq.write_table(pa.table({"text": rows}), path)
    args = {"dataset": "parquet", "data_files": files, "streaming": streaming, "cache_dir": str(tmp_path / "c")}
    folder = prepared(**args)
    capsys.readouterr()
    data.rename(tmp_path / "moved")  # the data files are gone: datasets cannot resolve the request any more
    dm = TextDataModule(**SMALL, **args)
    dm.setup()
    assert dm.prepared_dir == folder and dm.vocab.decode(dm.splits["train"][:40].tolist()) == WHOLE[:40]
    notes = [line for line in capsys.readouterr().err.splitlines() if "cannot be read now" in line]
    assert len(notes) == 1 and notes[0].startswith("charlm: --data.dataset 'parquet' cannot be read now "
                                                   "(FileNotFoundError: "), notes
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime((folder / "meta.json").stat().st_mtime))
    assert notes[0].endswith(f"training on the copy prepared on {when} in {folder}, which may be stale."), notes
    # another request (a slice), never prepared: nothing to fall back on
    with pytest.raises(FileNotFoundError, match=r"^--data\.data_files: .*part-0\.parquet matches no file; check the "
                       r"path or glob; and no copy prepared before with these --data flags is in .* to fall back "
                       r"on\.$") as err:
        TextDataModule(**SMALL, **args, max_bytes=1000).prepare_data()
    assert "\n" not in str(err.value)
    (folder / "tokens.u8").unlink()  # a damaged copy is not used either
    with pytest.raises(FileNotFoundError, match=r"no copy prepared before"):
        TextDataModule(**SMALL, **args).prepare_data()


def test_a_data_module_records_its_request_once(parquet_files, tmp_path):
    # prepare_data runs several times a process (vocab, the Trainer, setup per stage): one index read and write
    dm = TextDataModule(**SMALL, dataset="parquet", data_files=parquet_files, cache_dir=str(tmp_path / "c"))
    dm.prepare_data()
    index = tmp_path / "c" / "datasets-index.json"
    assert list(json.loads(index.read_text()).values()) == [dm.corpus.key]
    index.unlink()
    assert dm.vocab is not None
    dm.setup("fit")
    dm.setup("validate")
    dm.prepare_data()
    assert not index.exists()  # not recorded again by this data module...
    TextDataModule(**SMALL, dataset="parquet", data_files=parquet_files, cache_dir=str(tmp_path / "c")).prepare_data()
    assert list(json.loads(index.read_text()).values()) == [dm.corpus.key]  # ...while a new one records it


FIRST = {"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0", "SLURM_PROCID": "0"}  # said, not inherited from here


@pytest.mark.parametrize(("env", "first"), [
    (FIRST, True), ({"RANK": "1"}, False), ({"LOCAL_RANK": "1"}, False), ({"SLURM_PROCID": "1"}, False),
    ({"NODE_RANK": "1"}, False),
])
def test_only_the_first_process_of_a_run_notes_the_copy(env, first):
    # rank 1 under torchrun (RANK), of Lightning's DDP launcher (LOCAL_RANK) or under srun (SLURM_PROCID), or the
    # first process of node 1 of a multi-node run (NODE_RANK)
    code = ("from datamodules.common.rank_zero import is_rank_zero, rank_zero_note; print(is_rank_zero()); "
            "rank_zero_note('n')")
    out = run_python("-c", code, env=env)
    assert out.stdout.strip() == str(first), out.stderr[-2000:]
    assert out.stderr.splitlines().count("n") == first, out.stderr[-2000:]  # the note, from the first process only


def test_a_streamed_hub_dataset_trains_offline_from_the_copy_prepared_before(tmp_path):
    # real processes, HF_DATASETS_OFFLINE=1 read as datasets starts: 'someone/corpus' is a local folder while it
    # is prepared, then gone, so datasets asks the hub for it and may not (the path of a hub id, offline)
    corpus = tmp_path / "someone" / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "rows.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in ROWS))
    env = {"HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    code = "from datamodules import TextDataModule as T; T(dataset='someone/corpus', streaming=True).prepare_data()"
    assert run_python("-c", code, cwd=tmp_path, cache=tmp_path / "c", env=env, timeout=120).returncode == 0
    corpus.rename(tmp_path / "moved")
    flags = ["--data", "TextDataModule", "--data.dataset", "someone/corpus", "--data.streaming", "true",
             "--data.batch_size", "2", "--data.seq_len", "16", "--data.eval_batch_size", "1", "--model.num_layers", "1",
             "--model.hidden_size", "16", "--model.embedding_dim", "8", "--trainer.max_steps", "2",
             "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    out = charlm("fit", *flags, cwd=tmp_path, cache=tmp_path / "c", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    note = [line for line in out.stderr.splitlines() if "cannot be read now" in line]
    assert len(note) == 1 and "(ConnectionError: " in note[0] and "which may be stale." in note[0], out.stderr[-3000:]
    assert len(list((tmp_path / "c" / "prepared").iterdir())) == 1  # nothing was prepared again
    out = charlm("fit", *flags, "--data.max_bytes", "1000", cwd=tmp_path, cache=tmp_path / "c", env=env)
    assert_one_line(out, "--data.dataset: could not stream 'someone/corpus'", "no copy prepared before")
