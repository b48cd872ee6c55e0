import pytest

from charlm.checkpoint import load_checkpoint
from charlm.infer.score import bits_per_byte
from charlm.serve.examples import CANDIDATES, SHOWN, examples
from charlm.serve.models import Served
from tests.serve.conftest import CODE_BYTES, SHAKESPEARE_CKPT, write_checkpoint


@pytest.fixture(scope="module")
def shakespeare() -> Served:
    return Served("shakespeare", load_checkpoint(SHAKESPEARE_CKPT))


def test_examples_use_only_bytes_the_model_knows_the_least_surprising_first(shakespeare):
    got = examples(shakespeare)
    vocab = shakespeare.loaded.vocab
    assert len(got) == SHOWN and all(not vocab.missing_bytes(e.encode()) for e in got)
    assert not any(c in e for e in got for c in "{}#_(<[=")  # no C, Python or wiki markup for a play's vocabulary
    bits = [bits_per_byte(shakespeare.loaded, b"\n" + e.encode())[0] for e in got]  # read as a line's start
    assert bits == sorted(bits)
    unseen = [c for c in CANDIDATES if c not in got and not vocab.missing_bytes(c.encode())]
    assert all(bits_per_byte(shakespeare.loaded, b"\n" + c.encode())[0] >= bits[-1] - 1e-6 for c in unseen)


def test_a_model_of_code_is_offered_code_among_the_candidates(tmp_path):
    served = Served("code", load_checkpoint(write_checkpoint(tmp_path / "c.ckpt", CODE_BYTES, 4, num_layers=1,
                                                             hidden_size=8, embedding_dim=4)))
    assert set(examples(served, shown=len(CANDIDATES))) == set(CANDIDATES)  # every candidate's bytes are known


def test_a_vocabulary_without_any_candidate_gets_a_few_of_its_letters(tmp_path):
    served = Served("dna", load_checkpoint(write_checkpoint(tmp_path / "d.ckpt", b"ACGT", 5, num_layers=1,
                                                            hidden_size=8, embedding_dim=4)))
    assert examples(served) == ["ACGT"]
    digits = Served("digits", load_checkpoint(write_checkpoint(tmp_path / "n.ckpt", b"0123456789", 5, num_layers=1,
                                                               hidden_size=8, embedding_dim=4)))
    assert examples(digits) == []
