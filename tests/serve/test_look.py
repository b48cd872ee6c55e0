import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from charlm.checkpoint import load_checkpoint
from charlm.cli.commands.classify import classify
from charlm.infer.neurons import display, features, rank_neurons, trace
from charlm.infer.score import bits_per_byte, ranking
from charlm.serve.comparing import compare
from charlm.serve.limits import LimitError
from charlm.serve.looking import Seen, TraceCache, look, saliency, see, surprise_bits
from charlm.serve.models import Served, names
from tests.serve.conftest import SHAKESPEARE_CKPT, write_checkpoint

TEXT = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n'


@pytest.fixture(scope="module")
def served() -> Served:
    return Served("shakespeare", load_checkpoint(SHAKESPEARE_CKPT))


def test_look_gives_the_unit_the_guesses_and_the_ranking_of_visualize(served):
    got = look(served, 0, TraceCache(), TEXT, "cell", 0, 5)
    tr = trace(served.loaded.model, served.loaded.vocab, TEXT.encode())
    np.testing.assert_allclose(got["values"], tr.cell[0, :, 5], atol=1e-4)
    assert got["chars"] == list(TEXT)
    assert [g for g, _ in got["top"][3]] == [chr(served.loaded.vocab.symbols[i]) for i in tr.top_ids[3]]
    expected = rank_neurons({"hidden": tr.hidden, "cell": tr.cell}, features(TEXT.encode()))
    assert [(r["feature"], r["state"], r["layer"], r["unit"]) for r in got["ranking"]] == [
        (f, s, lay, u) for f, best in expected.items() for s, lay, u, _ in best]
    other = look(served, 0, TraceCache(), TEXT, "hidden", 0, 6)
    assert other["colours"] != got["colours"]  # another unit, other colours


def test_surprise_is_per_byte_and_its_mean_is_charlm_scores_bpc(served):
    got = look(served, 0, TraceCache(), TEXT, "hidden", -1, 0)
    bits = surprise_bits(served, TEXT.encode())
    assert got["surprise"][0] is None and len(got["surprise"]) == len(TEXT)
    np.testing.assert_allclose(got["surprise"][1:], bits, atol=1e-3)
    assert bits.mean() == pytest.approx(bits_per_byte(served.loaded, TEXT.encode())[0], abs=1e-5)
    assert bits_per_byte(served.loaded, TEXT.encode(), window=7)[0] == pytest.approx(
        surprise_bits(served, TEXT.encode(), window=7).mean(), abs=1e-5)  # across windows too


def test_bytes_the_model_never_saw_are_left_out_with_a_note(served):
    got = look(served, 0, TraceCache(), "Speak {now}", "hidden", 0, 0)
    assert "".join(got["chars"]) == "Speak now"
    assert "left out 2 bytes" in got["note"] and "'{' (0x7b)" in got["note"]


@pytest.mark.parametrize(("args", "words"), [
    (("cell", 1, 0), ["layer must be in [0, 0]"]),
    (("hidden", 0, 16), ["unit must be in [0, 15]"]),
    (("inside", 0, 0), ["state must be hidden or cell"]),
    (("hidden", "0", 0), ["layer must be an integer"]),
])
def test_a_unit_the_model_lacks_is_refused(served, args, words):
    with pytest.raises(LimitError) as err:
        look(served, 0, TraceCache(), TEXT, *args)
    for word in words:
        assert word in str(err.value)


def test_look_refuses_a_text_over_its_limit(served):
    with pytest.raises(LimitError, match="5,001 bytes; this server takes at most 5,000") as err:
        look(served, 0, TraceCache(), "a" * 5001, "hidden", 0, 0)
    assert err.value.status == 413


def test_saliency_is_the_gradient_norm_of_the_next_bytes_log_prob_per_input_embedding(served):
    model, vocab = served.loaded.model, served.loaded.vocab
    position, window = 60, 20
    got = saliency(served, TEXT, position, window)
    assert all(p.grad is None for p in model.parameters())  # the shared model's weights get no gradient
    # the same quantity computed directly: embeddings as a leaf, the state entering the window as given
    ids = torch.as_tensor(vocab.encode(TEXT.encode()), dtype=torch.long)[None]
    start = position + 1 - window
    with torch.no_grad():
        _, hidden = model(ids[:, :start])
    emb = model.embed(ids[:, start : position + 1]).detach().requires_grad_()
    out, _ = model.rnn(emb, hidden)
    logp = model.head(out[0, -1]).log_softmax(-1)[ids[0, position + 1]]
    logp.backward()
    assert got["start"] == start and got["target"] == TEXT[position + 1]
    np.testing.assert_allclose(got["scores"], emb.grad[0].norm(dim=-1).numpy(), rtol=1e-3, atol=1e-6)
    assert got["p"] == pytest.approx(float(logp.detach().exp()), abs=1e-4)
    model.zero_grad(set_to_none=True)


def test_saliency_refuses_a_position_with_nothing_to_predict(served):
    with pytest.raises(LimitError, match=r"position must be .* in \[0, 3\]"):
        saliency(served, "abcde", 4)


def test_who_wrote_this_is_classifys_verdict(served, code_ckpt, capsys):
    other = Served("code", load_checkpoint(code_ckpt))
    got = compare([served, other], TEXT)
    verdict = classify([str(SHAKESPEARE_CKPT), str(code_ckpt)], text=TEXT)
    assert [got["verdict"]["name"], *(o["name"] for o in got["verdict"]["others"])] == ["shakespeare", "code"]
    assert got["verdict"]["bpc"] == pytest.approx(verdict[0][1], abs=1e-4)
    assert got["verdict"]["others"][0]["margin"] == pytest.approx(verdict[1][1] - verdict[0][1], abs=2e-4)
    for score in got["scores"]:
        assert np.mean([s for s in score["surprise"] if s is not None]) == pytest.approx(score["bpc"], abs=1e-3)


def test_who_wrote_this_leaves_out_for_all_what_one_model_never_saw_and_says_where(served, code_ckpt):
    got = compare([served, Served("code", load_checkpoint(code_ckpt))], "Speak {now}, speak")
    assert "".join(got["chars"]) == "Speak {now}, speak"  # the passage as pasted: the page marks what was left out
    assert got["skipped"] == [6, 10] and got["notes"][0].startswith("shakespeare: left out 2")
    assert got["scores"][0]["count"] == got["scores"][1]["count"] == len("Speak now, speak") - 1
    alone = compare([served], "Speak now, speak")  # the same bytes scored: the same surprise, in place
    for score in got["scores"][:1]:
        assert [s for i, s in enumerate(score["surprise"]) if i not in (6, 10)] == alone["scores"][0]["surprise"]
        assert score["surprise"][6] is None and score["surprise"][10] is None


def test_models_are_named_by_file_with_folders_only_to_tell_them_apart():
    assert names(["/a/x/last.ckpt", "/a/y/last.ckpt", "/b/other.ckpt"]) == ["x/last.ckpt", "y/last.ckpt", "other.ckpt"]


def test_look_and_saliency_check_the_text_as_sent_as_who_wrote_this_does(served):
    sent = "{" + "a" * 5000  # 5,001 bytes, 5,000 once the unknown '{' is left out
    with pytest.raises(LimitError, match="5,001 bytes") as err:
        look(served, 0, TraceCache(), sent, "hidden", 0, 0)
    assert err.value.status == 413
    with pytest.raises(LimitError, match="5,001 bytes"):
        saliency(served, sent, 3)


def test_typing_on_steps_only_the_new_bytes_and_gives_what_a_fresh_look_gives(tmp_path):
    served = Served("bytes", load_checkpoint(write_checkpoint(tmp_path / "b.ckpt", bytes(range(256)), 3, num_layers=2,
                                                              hidden_size=16, embedding_dim=8)))  # knows é and è
    cache = TraceCache()
    cache.get(0, served, TEXT.encode())
    for text in (TEXT + "Cit", TEXT + "Citiz", TEXT[:-20], TEXT + "é", TEXT + "è!"):  # é, è share a first byte
        seen = cache.get(0, served, text.encode())
        assert seen.reused >= len(TEXT) - 20, text
        fresh = see(served, text.encode())
        assert fresh.reused == 0
        assert seen.trace.text == fresh.trace.text == display(text.encode())
        np.testing.assert_allclose(seen.trace.hidden, fresh.trace.hidden, atol=1e-5)
        np.testing.assert_allclose(seen.trace.cell, fresh.trace.cell, atol=1e-5)
        np.testing.assert_array_equal(seen.trace.top_ids, fresh.trace.top_ids)
        np.testing.assert_allclose(seen.bits, fresh.bits, atol=1e-4)
        assert [r["unit"] for r in seen.ranking] == [r["unit"] for r in fresh.ranking]
    # è continued from é's trace after their shared first byte (0xC3): the state after it depends on bytes 0..t only
    assert cache.get(0, served, (TEXT + "è!").encode()).reused == len(TEXT.encode()) + 1
    assert cache.get(1, served, TEXT.encode()).reused == 0  # another model's traces are never continued


def test_the_trace_cache_holds_a_byte_budget_not_a_count(served):
    one = see(served, TEXT.encode()).nbytes
    cache = TraceCache(budget=int(2.5 * one))
    for i in range(6):
        cache.get(0, served, ("ABCDEF"[i] + TEXT[1:]).encode())
        assert cache.held() <= cache.budget
    assert len(cache._items) == 2  # the two most recent fit


@contextlib.contextmanager
def bytes_read(served: Served) -> Iterator[list[int]]:
    """How many bytes the real model reads meanwhile (tokens through its embedding: ``forward`` and ``step``
    alike), in a one-item list."""
    count = [0]
    handle = served.loaded.model.embed.register_forward_hook(lambda m, args, out: count.__setitem__(
        0, count[0] + args[0].numel()))
    try:
        yield count
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def bytes_model(tmp_path_factory) -> Served:
    """A 2 x 16 LSTM that knows every byte (é, è)."""
    path = write_checkpoint(tmp_path_factory.mktemp("bytes") / "b.ckpt", bytes(range(256)), 3, num_layers=2,
                            hidden_size=16, embedding_dim=8)
    return Served("bytes", load_checkpoint(path))


def test_one_pass_gives_the_trace_and_charlm_scores_surprise(bytes_model):
    cache = TraceCache()
    with bytes_read(bytes_model) as read:
        seen = cache.get(0, bytes_model, TEXT.encode())
    assert read[0] == len(TEXT)  # each byte once: the trace scores the bytes as it steps
    np.testing.assert_allclose(seen.bits, surprise_bits(bytes_model, TEXT.encode()), rtol=1e-5, atol=1e-5)
    for text, stepped in ((TEXT + "Cité", 6), (TEXT + "Cité!", 2), (TEXT[:-20], 0)):  # typed on, on, deleted
        with bytes_read(bytes_model) as read:
            seen = cache.get(0, bytes_model, text.encode())
        # the new bytes and the one before them (its guess scores the first); none when deleting at the end
        assert read[0] == stepped, text
        np.testing.assert_allclose(seen.bits, surprise_bits(bytes_model, text.encode()), rtol=1e-5, atol=1e-5)
        assert seen.surprise[1:] == [round(float(b), 3) for b in seen.bits] and seen.surprise[0] is None


def test_saliency_starts_from_the_cached_state_of_its_window(bytes_model):
    text, position, window = TEXT + "Cité!", 70, 20
    cache = TraceCache()
    with bytes_read(bytes_model) as read:
        alone = saliency(bytes_model, text, position, window)
    assert read[0] == position + 1  # from byte 0: nothing cached
    cache.get(0, bytes_model, TEXT.encode())  # the text before "Cité!" was looked at: its trace holds the state
    with bytes_read(bytes_model) as read:
        got = saliency(bytes_model, text, position, window, cache=cache, index=0)
    assert read[0] == window  # the window only
    assert got["start"] == alone["start"] and got["target"] == alone["target"]
    np.testing.assert_allclose(got["scores"], alone["scores"], rtol=1e-4, atol=1e-6)
    assert got["p"] == pytest.approx(alone["p"], abs=2e-4)
    with bytes_read(bytes_model) as read:  # another model's traces are not its state
        saliency(bytes_model, text, position, window, cache=cache, index=1)
    assert read[0] == position + 1


def test_a_saliency_keeps_the_trace_it_starts_from_in_the_cache(bytes_model):
    first, second, third = TEXT.encode(), b"Q" + TEXT[1:].encode(), b"Z" + TEXT[1:].encode()
    cache = TraceCache(budget=int(2.5 * see(bytes_model, first).nbytes))  # room for two traces
    cache.get(0, bytes_model, first)
    cache.get(0, bytes_model, second)
    saliency(bytes_model, TEXT, 70, 20, cache=cache, index=0)  # starts from the first text's trace: now the newest
    cache.get(0, bytes_model, third)  # pushes out the least recently used: the second text's, not the first's
    assert [seen.data for seen in cache._items.values()] == [first, third]
    with bytes_read(bytes_model) as read:
        saliency(bytes_model, TEXT, 70, 20, cache=cache, index=0)
    assert read[0] == 20  # the window only: its start state still cached


def test_another_unit_reuses_the_texts_guesses_and_surprise(bytes_model):
    cache = TraceCache()
    first = look(bytes_model, 0, cache, TEXT, "hidden", 0, 1)
    with bytes_read(bytes_model) as read:
        other = look(bytes_model, 0, cache, TEXT, "cell", 1, 2)
    assert read[0] == 0
    assert other["top"] is first["top"] and other["surprise"] is first["surprise"]  # built once per text
    assert other["values"] != first["values"]


def test_the_trace_cache_keeps_a_running_total(monkeypatch, bytes_model):
    reads = [0]
    size = Seen.nbytes.fget

    def counted(seen: Seen) -> int:
        reads[0] += 1
        return size(seen)

    monkeypatch.setattr(Seen, "nbytes", property(counted))
    one = see(bytes_model, TEXT.encode()).nbytes
    cache, texts = TraceCache(budget=int(3.5 * one)), 12
    reads[0] = 0
    for i in range(texts):
        cache.get(0, bytes_model, (chr(65 + i) + TEXT[1:]).encode())
        assert cache.held() == sum(size(seen) for seen in cache._items.values()) <= cache.budget
    assert len(cache._items) == 3
    assert reads[0] == texts + (texts - 3)  # each size read once in, once out: not summed again per eviction


def test_the_verdict_is_classifys_ranking():
    got = ranking([("b", 2.5), ("a", 2.0), ("c", 2.25)], 800)
    assert got == [("a", 2.0, 0.0, 0.0), ("c", 2.25, 0.25, 25.0), ("b", 2.5, 0.5, 50.0)]
