"""The web app: one page, its script, and a JSON/SSE route per view. Starlette only here.

Routes (anything else is 404; the page's files are read from the package when the app is built and
served from memory, so a request's path is never a file name):
    GET  /             the page              GET  /app.js, /style.css, /favicon.svg (and .ico)  its files
    GET  /api/models   the models and limits POST /api/write    a sample as server-sent events
    POST /api/look     Look inside           POST /api/saliency one prediction's saliency
    POST /api/compare  Who wrote this        GET  /api/status   generations and analyses: running, done
Every request passes charlm.serve.guard first (Host, Origin, Content-Type), and every body
charlm.serve.body (size, UTF-8, JSON, each field read by its kind): a bad one is a 4xx naming the field.
The analyses (Look inside, saliency, Who wrote this) take one of ANALYSES_AT_ONCE places each, so a burst
of them (a page sends one per pause in typing) queues instead of filling the worker threads and the memory;
one whose client went away while it waited is not computed.

Ctrl-C (``stopping`` set, by charlm.cli.commands.serve): every stream ends at its next step with a
``shutdown`` event and every analysis answers 503 at once (its daemon thread is left to finish on its own;
``computing`` tells the command to exit without waiting for it), so uvicorn's graceful shutdown finds nothing
to wait for or to cancel: the server exits within a second, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charlm.serve import limits, writing
from charlm.serve.body import read_body
from charlm.serve.comparing import compare
from charlm.serve.examples import examples
from charlm.serve.guard import Guard
from charlm.serve.limits import ANALYSES_AT_ONCE, MAX_COMPARE, MAX_LOOK, MAX_PROMPT, LimitError
from charlm.serve.looking import TraceCache, look, saliency
from charlm.serve.models import Served, pick
from charlm.version import __version__

# The page's own script and styles only: nothing inline runs, nothing loads from elsewhere, no framing
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8"), "/favicon.svg": ("favicon.svg", "image/svg+xml"),
              "/favicon.ico": ("favicon.svg", "image/svg+xml")}  # .ico: for browsers that ask for it anyway
ANALYSIS_THREAD = "charlm analysis"
SERVER_STOPPED = "charlm serve stopped \u2014 restart it and reload this page."


class Analyses:
    """The analyses' places (an anyio limiter: it counts those waiting and running), and how many were done
    and skipped because their client had gone."""

    def __init__(self, places: int) -> None:
        self.places, self.done, self.skipped = anyio.CapacityLimiter(places), 0, 0

    def as_dict(self) -> dict[str, int]:
        held = self.places.statistics()
        return {"waiting": held.tasks_waiting, "running": held.borrowed_tokens, "done": self.done,
                "skipped": self.skipped}


class Generations:
    """Counts the generations running (all tabs together) against ``most``, and every step taken."""

    def __init__(self, most: int) -> None:
        self.most, self.running, self.steps, self.started = most, 0, 0, 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.running >= self.most:
                raise LimitError(f"{self.running} samples are being written already, this server's limit "
                                 f"(--max_generations {self.most}); stop one or wait for it to finish.", 429)
            self.running += 1
            self.started += 1

    def leave(self) -> None:
        with self._lock:
            self.running -= 1

    def count(self, steps: int) -> None:
        with self._lock:
            self.steps += steps


def refusing(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A LimitError becomes a JSON {"error": message} with its status, for the page to show."""
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except LimitError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)

    return route


async def http_error(request: Request, err: HTTPException) -> Response:
    """Starlette's own refusals (no such path: 404; a method the route lacks: 405) as JSON errors, as the routes'."""
    allowed = (err.headers or {}).get("Allow")
    why = (f"{request.url.path} takes {allowed}, not {request.method}" if allowed else
           f"{request.url.path} is neither the page nor one of its /api routes")
    return JSONResponse({"error": f"{err.detail}: {why}."}, status_code=err.status_code, headers=err.headers)


def once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, run by the first call only."""
    lock, done = threading.Lock(), []

    def run() -> None:
        with lock:
            if not done:
                done.append(True)
                action()

    return run


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event (one JSON line of data)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def computing() -> bool:
    """Whether work of in_daemon_thread (an analysis, a prompt pass) is still being computed, perhaps for a client
    long gone."""
    return any(thread.name == ANALYSIS_THREAD and thread.is_alive() for thread in threading.enumerate())


def _settle(future: asyncio.Future, outcome: tuple[bool, Any]) -> None:
    ok, value = outcome
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def in_daemon_thread(work: Callable[[], Any], stopping: threading.Event) -> tuple[bool, Any]:
    """(True, ``work()``) computed in a daemon thread, or (False, None) as soon as ``stopping`` is set: the thread
    is then left to finish alone, and being a daemon it does not hold up the exit. (anyio's worker threads are
    joined at exit: a 5,000-byte look of a large model would keep Ctrl-C waiting for seconds.)"""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            outcome = (True, work())
        except BaseException as err:  # noqa: BLE001 (raised again in the request's task)
            outcome = (False, err)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for it
            loop.call_soon_threadsafe(_settle, future, outcome)

    threading.Thread(target=run, name=ANALYSIS_THREAD, daemon=True).start()
    while not stopping.is_set():
        done, _ = await asyncio.wait({future}, timeout=0.1)
        if done:
            return True, future.result()
    return False, None


def build_app(models: list[Served], max_generations: int = limits.DEFAULT_GENERATIONS, host: str = "127.0.0.1",
              stopping: threading.Event | None = None) -> Starlette:
    """The app serving ``models`` (chosen on the command line; requests name them by index), reached as
    ``host`` (the --host it listens on) or a loopback name; ``stopping``, once set, ends its streams and
    analyses (the server is going: Ctrl-C)."""
    page = {path: (files("charlm.serve").joinpath("page", name).read_bytes(), kind)
            for path, (name, kind) in PAGE_FILES.items()}
    generations, cache = Generations(max_generations), TraceCache()
    analyses, stopping = Analyses(ANALYSES_AT_ONCE), stopping or threading.Event()
    described = [served.describe() | {"examples": examples(served)} for served in models]  # once: they stay

    async def page_file(request: Request) -> Response:
        body, kind = page[request.url.path]
        return Response(body, media_type=kind, headers=PAGE_HEADERS)

    async def analysed(request: Request, work: Callable[[], dict[str, Any]]) -> Response:
        """``work``'s answer, computed in a worker thread when a place is free, unless the client has gone."""
        async with analyses.places:
            if await request.is_disconnected():  # a newer request replaced it (the page aborts the old one)
                analyses.skipped += 1
                return Response(status_code=499)
            try:
                answered, answer = await in_daemon_thread(work, stopping)
            finally:
                analyses.done += 1
            if not answered:
                return JSONResponse({"error": SERVER_STOPPED}, status_code=503)
            return JSONResponse(answer)

    async def models_route(request: Request) -> Response:
        return JSONResponse({"models": described, "version": __version__,
                             "limits": limits.as_dict() | {"max_generations": generations.most}})

    async def status(request: Request) -> Response:
        return JSONResponse({"running": generations.running, "started": generations.started,
                             "steps": generations.steps, "analyses": analyses.as_dict()})

    @refusing
    async def write(request: Request) -> Response:
        body = await read_body(request, "prompt", MAX_PROMPT)
        served = pick(models, body.get("model", 0))
        asked = writing.parse(body, served)  # the prompt against the model's vocabulary too: before a slot is taken
        generations.enter()  # before the response starts: a refusal is a plain 429 with its message
        release = once(generations.leave)
        try:
            steps = writing.pieces(served, asked)
            # the prompt pass and a byte: seconds for 10,000 bytes of a large model, so as an analysis is computed
            answered, taken = await in_daemon_thread(lambda: writing.take(steps, 0.0), stopping)
            if not answered:
                raise LimitError(SERVER_STOPPED, 503)
            first, done, ran = taken
            generations.count(ran)
        except LimitError:
            release()
            raise
        except ValueError as err:  # the model's outputs are not finite (charlm.infer.logits.NOT_FINITE says what to do)
            release()
            raise LimitError(str(err), 500) from None
        except BaseException:
            release()
            raise

        async def events() -> AsyncIterator[bytes]:
            nonlocal done
            sent, text = 0, first
            try:
                yield sse("start", {"seed": asked.seed, "model": served.name})
                while True:
                    if text:
                        sent += len(text.encode())
                        yield sse("text", {"text": text})
                    if done:
                        break
                    if stopping.is_set():  # Ctrl-C: end now, saying why, rather than be cancelled mid-step
                        yield sse("shutdown", {"error": SERVER_STOPPED, "bytes": sent})
                        return
                    text, done, ran = await anyio.to_thread.run_sync(writing.take, steps)
                    generations.count(ran)
                yield sse("done", {"bytes": sent, "seed": asked.seed})
            except ValueError as err:  # the model's outputs went inf / NaN midway (charlm.infer.logits.NOT_FINITE)
                yield sse("error", {"error": str(err)})
            finally:  # also when the client went away: Starlette cancels this at its next await
                with contextlib.suppress(ValueError):  # "already executing": a forced exit cancelled the wait for
                    steps.close()  # a step whose thread still runs (a second Ctrl-C); the generator is dropped
                release()

        stream = events()
        weakref.finalize(stream, release)  # a stream cancelled before its first step never runs its finally
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @refusing
    async def look_route(request: Request) -> Response:
        body = await read_body(request, "text", MAX_LOOK)
        index = body.get("model", 0)
        served, text = pick(models, index), body.text()
        state = body.choice("state", ("hidden", "cell"), "hidden")
        layer, unit = body.integer("layer", -1), body.integer("unit", 0)
        return await analysed(request, lambda: look(served, index, cache, text, state, layer, unit))

    @refusing
    async def saliency_route(request: Request) -> Response:
        body = await read_body(request, "text", MAX_LOOK)
        index = body.get("model", 0)
        served, text, position = pick(models, index), body.text(), body.integer("position")
        return await analysed(request, lambda: saliency(served, text, position, cache=cache, index=index))

    @refusing
    async def compare_route(request: Request) -> Response:
        text = (await read_body(request, "text", MAX_COMPARE)).text()
        return await analysed(request, lambda: compare(models, text))

    routes = [Route(path, page_file) for path in PAGE_FILES] + [
        Route("/api/models", models_route), Route("/api/status", status),
        Route("/api/write", write, methods=["POST"]), Route("/api/look", look_route, methods=["POST"]),
        Route("/api/saliency", saliency_route, methods=["POST"]),
        Route("/api/compare", compare_route, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, hosts=[host])],
                     exception_handlers={HTTPException: http_error})
