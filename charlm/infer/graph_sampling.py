"""Sampling on a CUDA GPU: many whole steps (draw a byte, feed it through the model) per graph replay.

One byte is far too little work to hide kernel launches. A graph of the model's step alone still
left the draw (softmax, multinomial), the copies in and out and the Python loop to run eagerly for
every byte: 4.9k chars/s for a 3x512 LSTM on an H200 (scripts/gpu_check.py, 2026-11-28), against
the 19k that the design notes measured for the step on an H100. So the graph here holds ``chunk``
whole steps, draw included, and the host waits once per chunk instead of once per byte.

The draw is Gumbel-max: ``argmax(logits / T + g)`` with ``g = -log(-log u)``, u uniform, is a draw
from ``softmax(logits / T)``. The noise for a chunk is drawn before its replay with the caller's
generator (so a seed gives the same text, and the generator never has to be registered with the
graph); top-k and top-p set logits to -inf first, exactly as for the eager paths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch

from charlm.infer.logits import filter_logits
from charlm.model import CharRNN, Hidden, hidden_tensors, map_hidden

CHUNK = 32  # steps per replay: enough to amortise the replay and the wait, little wasted past the end
SHIFT_BELOW = 1e-3  # logits up to 3e35 stay finite divided by more: 2 kernels per byte saved above it
CAPTURE_LOCK = threading.Lock()  # held while a graph is captured
NOISE_BYTES = 64 * 2**20  # cap on the noise buffer (chunk x N x V float32); a large batch gets fewer steps


def fill_gumbel(out: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Fill ``out`` (float32) with Gumbel(0, 1) noise, in place: -log(-log u), u uniform in [tiny, 1)."""
    u = out.uniform_(generator=generator)  # [0, 1); at 0, -log(-log u) would be -inf
    return u.clamp_(min=torch.finfo(torch.float32).tiny).log_().neg_().log_().neg_()


def draw(logits: torch.Tensor, noise: torch.Tensor | None, temperature: float, top_k: int | None,
         top_p: float | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """One byte per row by Gumbel-max. logits, noise: (N, V) -> ids (N,) (into ``out`` if given); no
    noise (or T = 0) is argmax. No host sync, no data-dependent shape: it can be captured in a graph.
    """
    logits = logits.float()
    if noise is None or temperature < torch.finfo(torch.float32).tiny:
        return torch.argmax(logits, dim=-1, out=out)
    if temperature < SHIFT_BELOW:  # a tiny temperature would send the largest logit to inf: make it 0 first
        logits = logits - logits.max(dim=-1, keepdim=True).values
    return torch.argmax(filter_logits(logits / temperature, top_k, top_p) + noise, dim=-1, out=out)


def chunk_steps(batch: int, vocab: int, length: int) -> int:
    """Steps per replay: CHUNK, fewer for a short text or when the noise would pass NOISE_BYTES."""
    return max(1, min(CHUNK, length, NOISE_BYTES // (4 * batch * vocab)))


class GraphSampler:
    """Draws ``chunk`` bytes per row per call of :meth:`run_chunk`, from static buffers it owns.

    logits (N, V) and hidden are the state after the prompt; the sampler copies them and carries its
    own copy on. ``capture=False`` runs the same steps eagerly (a CPU, and the tests of the plumbing).
    """

    def __init__(self, model: CharRNN, logits: torch.Tensor, hidden: Hidden, temperature: float,
                 top_k: int | None, top_p: float | None, chunk: int, capture: bool = True) -> None:
        self.model, self.temperature, self.top_k, self.top_p = model, temperature, top_k, top_p
        batch, vocab = logits.shape
        device = logits.device
        self.logits = logits.float().clone()  # (N, V): the logits the next byte is drawn from
        self.hidden = map_hidden(torch.Tensor.clone, hidden)
        self.tokens = torch.zeros(chunk, batch, dtype=torch.long, device=device)  # (chunk, N): one chunk's bytes
        greedy = temperature < torch.finfo(torch.float32).tiny
        self.noise = None if greedy else torch.zeros(chunk, batch, vocab, device=device)  # (chunk, N, V)
        self.graph = None
        if capture:
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):  # warm up cuDNN and the allocator outside the capture
                for _ in range(2):
                    token = draw(self.logits, None if self.noise is None else self.noise[0], temperature, top_k, top_p)
                    model(token[:, None], self.hidden)
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            # One capture at a time in this process (charlm serve: several tabs' samples); thread_local:
            # only this thread may not allocate or sync while capturing, so another thread's eager work (a
            # Look inside trace, a stream's copies) goes on instead of invalidating the capture.
            with CAPTURE_LOCK, torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self._steps()

    def _steps(self) -> None:
        """chunk x (draw from self.logits, feed the byte, carry logits and hidden on), all in place."""
        for k in range(self.tokens.shape[0]):
            draw(self.logits, None if self.noise is None else self.noise[k], self.temperature, self.top_k, self.top_p,
                 out=self.tokens[k])  # (N,)
            logits, hidden = self.model(self.tokens[k][:, None], self.hidden)  # (N, 1, V)
            self.logits.copy_(logits[:, -1])
            for static, value in zip(hidden_tensors(self.hidden), hidden_tensors(hidden), strict=True):
                static.copy_(value)

    def run_chunk(self, generator: torch.Generator | None) -> torch.Tensor:
        """The next chunk of bytes, (chunk, N) on the device (overwritten by the next call)."""
        if self.noise is not None:
            fill_gumbel(self.noise, generator)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._steps()
        return self.tokens

    def bytes(self, length: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        """``length`` steps of bytes (N,) each, on the CPU.

        The next chunk is queued on the GPU before this one's bytes are handed out, so the GPU works
        while the caller prints; each chunk comes to the host in one copy.
        """
        pending = None  # (bytes on the host (chunk, N), event that says they arrived)
        produced = 0
        while produced < length or pending is not None:
            ready = None
            if produced < length:
                tokens = self.run_chunk(generator)
                host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=tokens.is_cuda)
                host.copy_(tokens, non_blocking=True)
                event = torch.cuda.Event() if tokens.is_cuda else None
                if event is not None:
                    event.record()
                ready, produced = (host, event, min(tokens.shape[0], length - produced)), produced + tokens.shape[0]
            if pending is not None:
                host, event, count = pending
                if event is not None:
                    event.synchronize()
                yield from host[:count]
            pending = ready
