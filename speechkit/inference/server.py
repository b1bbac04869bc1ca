"""``speechkit serve``: streaming recognition for many clients over WebSocket (aiohttp), one batched decode loop.

**Protocol.** A client opens ``ws://HOST:PORT/asr`` (query ``?sample_rate=8000`` when its audio is not at the
server's default rate; ``?token=SECRET`` or the header ``Authorization: Bearer SECRET`` when the server has a
token: without the right one the handshake is answered ``401`` before any upgrade). Then:

- client -> server, binary messages: raw signed 16-bit little-endian mono PCM at the connection's rate, any number
  of bytes up to ``max_frame_bytes`` (an even number: whole samples);
- client -> server, text: ``{"type": "end"}`` (or the bare string ``EOS``) when the utterance is over;
- server -> client, text JSON: ``{"type": "partial", "segment", "text", "start", "end", "tokens"}`` whenever the
  open segment's text changes (``tokens``: ``[{"token", "start", "end"}]``, seconds from the start of the stream;
  the fields are :meth:`~speechkit.inference.streaming.StreamResult.to_dict`'s); ``{"type": "final", ...}`` (the
  same fields) once per segment closed by an endpoint and for the last one when the input ends; then the server
  closes the connection (code 1000). A connection with no audio for ``idle_timeout_seconds`` is ended the same
  way (its finals, then close with reason ``idle timeout``).
- errors, server -> client: ``{"type": "error", "code": CODE, "message": TEXT}``. Recoverable (the message is
  dropped, the connection goes on): ``odd_frame_length`` (a binary message of an odd number of bytes),
  ``frame_too_large`` (over ``max_frame_bytes``), ``bad_message`` (text that is not JSON or not an object),
  ``unknown_message`` (an unknown ``type``), ``audio_after_end``. Ending: ``utterance_too_long`` (audio past
  ``max_utterance_seconds`` is cut off, the stream is finalised: finals, then close). Fatal (close right after):
  ``too_many_streams`` (``max_streams`` connections are already streaming; close code 1013, try again later),
  ``internal_error``. A binary message over 4 x ``max_frame_bytes`` is a protocol violation: the connection is
  closed with code 1009 (message too big) by the WebSocket layer. One connection's error never affects another.

``GET /health`` answers JSON: ``status`` (``"ok"``), ``active_streams``, ``max_streams``, ``model``,
``sample_rate``, ``uptime_seconds`` and ``totals`` (``connections``, ``rejected``, ``unauthorized``, ``errors``,
``dropped_messages``, ``dropped_clients``, ``frames_received``, ``audio_seconds``, ``decode_rounds``,
``max_batch``). It needs no token (it is what load balancers and probes poll).

**How it runs.** Each connection's handler reads the socket into a bounded queue (``queue_frames`` messages): when
the queue is full the handler stops reading, so TCP flow control slows a client that sends faster than the server
decodes (memory per connection stays bounded). ONE decode task serves every connection: each round it moves the
queued audio of the streams that are waiting for audio into them, then calls
:meth:`~speechkit.inference.streaming.Recognizer.decode` once on every ready stream (one batched network call across
clients) in a worker thread (``loop.run_in_executor``), so the event loop keeps reading sockets meanwhile; when no
stream has a backlog it waits up to ``batch_wait_ms`` after new audio arrives to gather more streams into the
batch. Results go to a per-connection outbox that a per-connection sender task writes to the socket: a slow
reader never blocks the decode loop. When an outbox is full, partial results are dropped (counted in
``dropped_messages``); a client that cannot even take its final results, or whose socket write stalls for
``send_timeout_seconds``, is disconnected (``dropped_clients``). A client that disconnects mid-utterance has its
stream removed; the others are not affected.

Example::

    >>> from speechkit.inference.server import Server, ServerOptions
    >>> from speechkit.inference.streaming import Recognizer
    >>> server = Server(Recognizer.from_pretrained("exp/tdt_streaming/model.safetensors"),
    ...                 ServerOptions(port=8765))  # doctest: +SKIP
    >>> server.serve_forever()  # doctest: +SKIP

    and a client: :func:`speechkit.inference.client.transcribe_file` (``"ws://127.0.0.1:8765/asr"``, "a.wav").
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

if TYPE_CHECKING:  # pragma: no cover
    from speechkit.inference.streaming import Recognizer, Stream

__all__ = ["TOKEN_ENV", "ServeCommand", "Server", "ServerOptions", "build_server", "serve_command"]

#: Environment variable ``speechkit serve`` reads the shared secret from when ``--token`` is not given.
TOKEN_ENV = "SPEECHKIT_SERVE_TOKEN"

#: Binary messages up to this many times ``max_frame_bytes`` get a ``frame_too_large`` error and the connection
#: goes on; larger ones are refused by the WebSocket layer itself (close 1009), which bounds what is ever buffered.
_HARD_FRAME_FACTOR = 4
_MIN_RATE, _MAX_RATE = 1000, 384000

log = logging.getLogger("speechkit.serve")


@dataclass(frozen=True)
class ServerOptions:
    """Network settings and limits of a :class:`Server`.

    Attributes:
        host: interface to listen on; the default is the loopback interface only (``"0.0.0.0"``: every interface,
            then set a ``token``).
        port: TCP port; 0 picks a free one (:meth:`Server.start` returns it).
        token: shared secret clients must send (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``); ``None``: no
            authentication.
        max_streams: connections streaming at once; one more gets a ``too_many_streams`` error and is closed.
        max_frame_bytes: largest binary message (PCM bytes) accepted.
        max_utterance_seconds: audio one connection may send (``None``: no limit); what goes past it is cut off
            and the stream is finalised.
        idle_timeout_seconds: a connection that sends no audio for this long is finalised and closed
            (``None``: never).
        queue_frames: binary messages queued per connection before the server stops reading its socket.
        batch_wait_ms: after new audio arrives at an idle decode loop, how long it waits to gather more streams
            into one batch.
        sample_rate: rate (Hz) of the PCM clients send, unless a connection names its own (``?sample_rate=``).
        send_queue_messages: results waiting to be written per connection; past it, partials are dropped.
        send_timeout_seconds: a socket write that takes longer than this disconnects the client.
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    max_streams: int = 16
    max_frame_bytes: int = 64000
    max_utterance_seconds: float | None = 3600.0
    idle_timeout_seconds: float | None = 10.0
    queue_frames: int = 32
    batch_wait_ms: float = 10.0
    sample_rate: int = 16000
    send_queue_messages: int = 256
    send_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"ServerOptions.{name}={getattr(self, name)!r}: {why}")

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        if not isinstance(self.host, str) or not self.host:
            raise bad("host", "must be a non-empty host name or address")
        if not is_int(self.port) or not 0 <= self.port <= 65535:
            raise bad("port", "must be an integer in [0, 65535] (0: pick a free port)")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise bad("token", "must be a non-empty string or None")
        for name, low in (("max_streams", 1), ("max_frame_bytes", 2), ("queue_frames", 1),
                          ("send_queue_messages", 1)):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise bad(name, f"must be an integer >= {low}")
        for name in ("max_utterance_seconds", "idle_timeout_seconds"):
            value = getattr(self, name)
            if value is not None and (not is_num(value) or not value > 0):
                raise bad(name, "must be > 0 seconds or None")
        if not is_num(self.batch_wait_ms) or not 0 <= self.batch_wait_ms <= 10000:
            raise bad("batch_wait_ms", "must be in [0, 10000] milliseconds")
        if not is_int(self.sample_rate) or not _MIN_RATE <= self.sample_rate <= _MAX_RATE:
            raise bad("sample_rate", f"must be an integer in [{_MIN_RATE}, {_MAX_RATE}] Hz")
        if not is_num(self.send_timeout_seconds) or not self.send_timeout_seconds > 0:
            raise bad("send_timeout_seconds", "must be > 0 seconds")


class _Close:
    """Outbox item: close the connection after the messages before it."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


_END = object()  # inbox item: the client's utterance is over


@dataclass
class _Connection:
    """Everything the server keeps about one WebSocket client."""

    id: int
    request: web.Request
    ws: web.WebSocketResponse
    sample_rate: int
    stream: Stream
    inbox: asyncio.Queue
    outbox: deque = field(default_factory=deque)
    out_ready: asyncio.Event = field(default_factory=asyncio.Event)
    samples: int = 0  # samples received, at the connection's rate
    last_audio: float = field(default_factory=time.monotonic)
    ended: bool = False  # no more audio will be queued (end message, idle, length limit)
    fed_end: bool = False  # the decode loop has called stream.input_finished()
    done: bool = False  # every final result is in the outbox
    gone: bool = False  # disconnected or dropped: results are not sent any more
    finals_sent: int = 0
    last_partial: tuple[int, str] | None = None
    close_reason: str = "end of stream"
    sender: asyncio.Task | None = None


@dataclass
class _Totals:
    connections: int = 0
    rejected: int = 0
    unauthorized: int = 0
    errors: int = 0
    dropped_messages: int = 0
    dropped_clients: int = 0
    frames_received: int = 0
    audio_seconds: float = 0.0
    decode_rounds: int = 0
    max_batch: int = 0


class Server:
    """A WebSocket streaming-recognition server for one :class:`~speechkit.inference.streaming.Recognizer`.

    See the module docstring for the protocol. Run it inside an event loop with :meth:`start` / :meth:`stop`, or
    blocking with :meth:`serve_forever`.

    Args:
        recognizer: the recognizer every connection's stream comes from (its options: endpointing, look-ahead ...).
        options: :class:`ServerOptions` (defaults when ``None``).
        model_name: name shown by ``/health`` (default: the model's source).

    Example:
        >>> async def main():  # doctest: +SKIP
        ...     server = Server(recognizer, ServerOptions(port=0))
        ...     host, port = await server.start()
        ...     ...  # clients connect to f"ws://{host}:{port}/asr"
        ...     await server.stop()
    """

    def __init__(self, recognizer: Recognizer, options: ServerOptions | None = None,
                 model_name: str | None = None) -> None:
        self.recognizer = recognizer
        self.options = options or ServerOptions()
        self.model_name = model_name or str(getattr(recognizer.model, "source", None) or "unknown")
        self.totals = _Totals()
        self._conns: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._handlers: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._loop_task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._started_at = time.monotonic()
        self._address: tuple[str, int] | None = None
        self._serving: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        where = f"ws://{self._address[0]}:{self._address[1]}/asr" if self._address else "not started"
        return f"Server({where}, {len(self._conns)} active, model={self.model_name!r})"

    # -- life cycle -----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/asr`` of the running server.

        Raises:
            RuntimeError: not started.
        """
        if self._address is None:
            raise RuntimeError("the server is not started (await server.start())")
        host, port = self._address
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{port}/asr"

    async def start(self) -> tuple[str, int]:
        """Listen and start the decode loop.

        Returns:
            ``(host, port)`` actually bound (the port chosen when ``options.port`` is 0).

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (port in use ...).
        """
        if self._runner is not None:
            raise RuntimeError("the server is already started")
        self._stopping = False
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speechkit-decode")
        app = web.Application()
        app.router.add_get("/asr", self._handle_asr)
        app.router.add_get("/health", self._handle_health)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._executor.shutdown(wait=False)
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self._address = (str(sockname[0]), int(sockname[1]))
        self._started_at = time.monotonic()
        self._loop_task = asyncio.create_task(self._decode_loop(), name="speechkit-decode-loop")
        return self._address

    async def stop(self) -> None:
        """Close every connection (code 1001, going away), stop the decode loop and stop listening. Idempotent."""
        if self._runner is None:
            return
        self._stopping = True
        for conn in list(self._conns.values()):
            conn.gone = True
            if conn.sender is not None:
                conn.sender.cancel()
        closes = [asyncio.wait_for(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"), 1.0)
                  for c in list(self._conns.values())]
        await asyncio.gather(*closes, return_exceptions=True)
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._runner.cleanup()
        assert self._executor is not None
        # A round still running in the worker finishes on its own; its results are not used.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._runner = self._loop_task = self._executor = None

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Start, run until SIGINT / SIGTERM (or Ctrl-C), then :meth:`stop`. Blocks; makes its own event loop.

        Args:
            on_ready: called with :attr:`url` once the server listens (e.g. to print it).
        """
        async def run() -> None:
            await self.start()
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._serving = (loop, done)
            for sig in (signal.SIGINT, signal.SIGTERM):
                # Not available off the main thread or on some platforms: Ctrl-C then raises KeyboardInterrupt.
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, done.set)
            if on_ready is not None:
                on_ready(self.url)
            try:
                await done.wait()
            finally:
                self._serving = None
                await self.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())

    def shutdown(self) -> None:
        """Make a :meth:`serve_forever` running in another thread stop (thread-safe; returns at once). Does nothing
        when it is not serving (call it after ``on_ready``)."""
        serving = self._serving
        if serving is not None:
            loop, done = serving
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(done.set)

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` returns (see the module docstring)."""
        t = self.totals
        return {
            "status": "ok",
            "active_streams": len(self._conns),
            "max_streams": self.options.max_streams,
            "model": self.model_name,
            "sample_rate": self.options.sample_rate,
            "uptime_seconds": round(time.monotonic() - self._started_at, 3),
            "totals": {
                "connections": t.connections, "rejected": t.rejected, "unauthorized": t.unauthorized,
                "errors": t.errors, "dropped_messages": t.dropped_messages, "dropped_clients": t.dropped_clients,
                "frames_received": t.frames_received, "audio_seconds": round(t.audio_seconds, 3),
                "decode_rounds": t.decode_rounds, "max_batch": t.max_batch,
            },
        }

    # -- HTTP handlers --------------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        token = self.options.token
        if token is None:
            return True
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
        # Constant-time comparison: the time taken says nothing about how much of the token was right.
        return hmac.compare_digest(given.encode(), token.encode())

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response(self.health())

    async def _handle_asr(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self.totals.unauthorized += 1
            return web.json_response({"type": "error", "code": "unauthorized",
                                      "message": "missing or wrong token (Authorization: Bearer TOKEN or ?token=)"},
                                     status=401)
        rate = self.options.sample_rate
        if "sample_rate" in request.query:
            raw = request.query["sample_rate"]
            if not raw.isdigit() or not _MIN_RATE <= int(raw) <= _MAX_RATE:
                self.totals.errors += 1
                return web.json_response({"type": "error", "code": "bad_sample_rate",
                                          "message": f"sample_rate={raw!r}: expected an integer in "
                                                     f"[{_MIN_RATE}, {_MAX_RATE}] Hz"}, status=400)
            rate = int(raw)
        ws = web.WebSocketResponse(max_msg_size=_HARD_FRAME_FACTOR * self.options.max_frame_bytes, timeout=2.0)
        await ws.prepare(request)
        if len(self._conns) >= self.options.max_streams or self._stopping:
            self.totals.rejected += 1
            self.totals.errors += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.send_str(json.dumps({
                    "type": "error", "code": "too_many_streams",
                    "message": f"the server is already streaming its maximum of {self.options.max_streams} "
                               "connections; try again later"})), self.options.send_timeout_seconds)
                await asyncio.wait_for(ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too many streams"),
                                       self.options.send_timeout_seconds)
            return ws
        conn = _Connection(next(self._ids), request, ws, rate, self.recognizer.create_stream(),
                           asyncio.Queue(maxsize=self.options.queue_frames))
        self._conns[conn.id] = conn
        self.totals.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        conn.sender = asyncio.create_task(self._sender(conn))
        try:
            await self._read(conn)
        finally:
            if not conn.done:
                conn.gone = True  # left mid-utterance: the decode loop forgets its stream
            self._conns.pop(conn.id, None)
            if task is not None:
                self._handlers.discard(task)
            if conn.gone and not conn.sender.done():
                conn.sender.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(conn.sender, self.options.send_timeout_seconds)
            if self._wake is not None:
                self._wake.set()
        return ws

    async def _read(self, conn: _Connection) -> None:
        """Read one connection's messages until it closes; audio goes to its inbox (awaiting room: backpressure)."""
        idle = self.options.idle_timeout_seconds
        while True:
            timeout = None
            if idle is not None and not conn.ended:
                # aiohttp treats a timeout of 0 as "none": keep it positive.
                timeout = max(1e-3, conn.last_audio + idle - time.monotonic())
            try:
                msg = await conn.ws.receive(timeout=timeout)
            except TimeoutError:
                conn.close_reason = "idle timeout"
                await self._end(conn)
                continue
            if msg.type == WSMsgType.BINARY:
                await self._on_audio(conn, msg.data)
            elif msg.type == WSMsgType.TEXT:
                await self._on_text(conn, msg.data)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 message too big, broken connection)
                if msg.type == WSMsgType.ERROR:
                    self.totals.errors += 1
                    log.info("connection %d: %s", conn.id, msg.data)
                return

    async def _on_audio(self, conn: _Connection, data: bytes) -> None:
        opts = self.options
        self.totals.frames_received += 1
        if conn.ended:
            self._error(conn, "audio_after_end", "audio after the end of the utterance is ignored")
            return
        if len(data) > opts.max_frame_bytes:
            self._error(conn, "frame_too_large", f"a binary message of {len(data)} bytes is over the limit of "
                                                 f"{opts.max_frame_bytes} bytes; dropped")
            return
        if len(data) % 2:
            self._error(conn, "odd_frame_length", f"a binary message of {len(data)} bytes is not whole 16-bit "
                                                  "samples; dropped")
            return
        if not data:
            return
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        too_long = False
        if opts.max_utterance_seconds is not None:
            room = int(opts.max_utterance_seconds * conn.sample_rate) - conn.samples
            if samples.shape[0] > room:
                samples, too_long = samples[: max(room, 0)], True
        conn.samples += samples.shape[0]
        conn.last_audio = time.monotonic()
        self.totals.audio_seconds += samples.shape[0] / conn.sample_rate
        if samples.shape[0]:
            await conn.inbox.put(samples)
            # The wait for room in the queue (backpressure) is not idleness: the idle clock starts after it.
            conn.last_audio = time.monotonic()
            assert self._wake is not None
            self._wake.set()
        if too_long:
            self._error(conn, "utterance_too_long", f"audio past max_utterance_seconds="
                                                    f"{opts.max_utterance_seconds} is cut off; ending the stream")
            conn.close_reason = "utterance too long"
            await self._end(conn)

    async def _on_text(self, conn: _Connection, text: str) -> None:
        if text.strip() == "EOS":
            await self._end(conn)
            return
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self._error(conn, "bad_message", f"text messages must be JSON objects like {{\"type\": \"end\"}}; got "
                                             f"{text[:80]!r}")
            return
        if obj.get("type") == "end":
            await self._end(conn)
            return
        self._error(conn, "unknown_message", f"unknown message type {obj.get('type')!r} (known: 'end')")

    async def _end(self, conn: _Connection) -> None:
        if conn.ended:
            return
        conn.ended = True
        await conn.inbox.put(_END)
        assert self._wake is not None
        self._wake.set()

    # -- sending --------------------------------------------------------------------------------------------------

    def _error(self, conn: _Connection, code: str, message: str) -> None:
        self.totals.errors += 1
        self._send(conn, {"type": "error", "code": code, "message": message})

    def _send(self, conn: _Connection, msg: dict[str, Any] | _Close) -> None:
        """Queue a message for ``conn`` without waiting (partials are dropped when its outbox is full)."""
        if conn.gone:
            return
        limit = self.options.send_queue_messages
        if isinstance(msg, dict) and len(conn.outbox) >= limit:
            if msg.get("type") == "partial":
                self.totals.dropped_messages += 1
                return
            if len(conn.outbox) >= 2 * limit:
                # Finals and errors get twice the room; a client that cannot take even those is gone.
                self._drop(conn, "its results are not being read")
                return
        conn.outbox.append(msg)
        conn.out_ready.set()

    def _drop(self, conn: _Connection, why: str) -> None:
        log.warning("dropping connection %d: %s", conn.id, why)
        self.totals.dropped_clients += 1
        self.totals.dropped_messages += sum(isinstance(m, dict) for m in conn.outbox)
        conn.outbox.clear()
        conn.gone = True
        if conn.sender is not None and conn.sender is not asyncio.current_task():
            conn.sender.cancel()
        transport = conn.request.transport
        if transport is not None:
            transport.abort()  # the reader then sees the connection closed and cleans up

    async def _sender(self, conn: _Connection) -> None:
        """Write ``conn``'s outbox to its socket, in order, each write bounded by ``send_timeout_seconds``."""
        timeout = self.options.send_timeout_seconds
        try:
            while True:
                while not conn.outbox:
                    conn.out_ready.clear()
                    await conn.out_ready.wait()
                item = conn.outbox.popleft()
                if isinstance(item, _Close):
                    await asyncio.wait_for(conn.ws.close(code=item.code, message=item.reason.encode()), timeout)
                    return
                await asyncio.wait_for(conn.ws.send_str(json.dumps(item, ensure_ascii=False)), timeout)
        except TimeoutError:
            self.totals.dropped_messages += isinstance(item, dict)  # the message whose write stalled
            self._drop(conn, f"a write took over {timeout} s")
        except (ConnectionError, RuntimeError) as err:  # the peer went away while we wrote
            log.info("connection %d: send failed: %s", conn.id, err)
            self.totals.dropped_messages += sum(isinstance(m, dict) for m in conn.outbox)
            conn.outbox.clear()
            conn.gone = True

    # -- decoding -------------------------------------------------------------------------------------------------

    def _live(self) -> list[_Connection]:
        return [c for c in self._conns.values() if not c.gone and not c.done]

    def _has_work(self) -> bool:
        return any(not c.inbox.empty() or self.recognizer.is_ready(c.stream) for c in self._live())

    def _collect(self) -> list[tuple[_Connection, list[np.ndarray], bool]]:
        """Take queued audio for the streams that are waiting for some (not the ones with a chunk still to decode:
        their queue fills and their reader pauses, which is the backpressure)."""
        feeds = []
        for conn in self._live():
            if conn.fed_end or self.recognizer.is_ready(conn.stream):
                continue
            chunks, end = [], False
            while not conn.inbox.empty():
                item = conn.inbox.get_nowait()
                if item is _END:
                    end = True
                    break
                chunks.append(item)
            if chunks or end:
                conn.fed_end = end
                feeds.append((conn, chunks, end))
        return feeds

    async def _decode_loop(self) -> None:
        while not self._stopping:
            try:
                await self._decode_step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: log it and keep serving rather than leave every client hanging
                log.exception("decode loop step failed")
                await asyncio.sleep(0.1)

    async def _decode_step(self) -> None:
        """Wait for work, or run one round: feed the collected audio, decode the ready streams, queue results."""
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        wait = self.options.batch_wait_ms / 1000.0
        if not self._has_work():
            self._wake.clear()
            await self._wake.wait()
            if wait:
                await asyncio.sleep(wait)  # let other clients' audio arrive: bigger batches
            return
        feeds = self._collect()
        live = self._live()
        try:
            results, batch = await loop.run_in_executor(self._executor, self._round, feeds, live)
        except Exception as err:  # a bug, not bad input: the streams of this round cannot go on
            log.exception("decode round failed")
            for conn in live:
                self._fail(conn, f"decoding failed: {type(err).__name__}: {err}")
            return
        if batch:
            self.totals.decode_rounds += 1
            self.totals.max_batch = max(self.totals.max_batch, batch)
        for conn, msgs, done, failure in results:
            if conn.gone:
                continue
            if failure is not None:
                self._fail(conn, failure)
                continue
            for msg in msgs:
                self._send(conn, msg)
            if done:
                conn.done = True
                self._send(conn, _Close(WSCloseCode.OK, conn.close_reason))

    def _fail(self, conn: _Connection, message: str) -> None:
        """A fatal ``internal_error`` for one connection: the error, then close (1011)."""
        self._error(conn, "internal_error", message)
        conn.done = True
        self._send(conn, _Close(WSCloseCode.INTERNAL_ERROR, "internal error"))

    def _round(self, feeds: list[tuple[_Connection, list[np.ndarray], bool]], live: list[_Connection]
               ) -> tuple[list[tuple[_Connection, list[dict[str, Any]], bool, str | None]], int]:
        """In the worker thread: feed the collected audio, decode every ready stream once (one batch), and return
        each connection's new messages. Returns ``([(conn, messages, stream_done, failure)], batch_size)``."""
        rec = self.recognizer
        failures: dict[int, str] = {}
        for conn, chunks, end in feeds:
            try:
                for chunk in chunks:
                    conn.stream.accept_waveform(conn.sample_rate, chunk)
                if end:
                    conn.stream.input_finished()
            except Exception as err:  # one client's stream failing must not stop the others
                log.exception("connection %d: feeding audio failed", conn.id)
                failures[conn.id] = f"{type(err).__name__}: {err}"
        live = [c for c in live if c.id not in failures]
        ready = [c.stream for c in live if rec.is_ready(c.stream)]
        if ready:
            rec.decode(ready)
        out: list[tuple[_Connection, list[dict[str, Any]], bool, str | None]] = []
        for conn in live:
            out.append((conn, self._new_messages(conn), conn.stream.is_done, None))
        for conn, _, _ in feeds:
            if conn.id in failures:
                out.append((conn, [], True, failures[conn.id]))
        return out, len(ready)

    @staticmethod
    def _new_messages(conn: _Connection) -> list[dict[str, Any]]:
        """The finals not sent yet, then the open segment's partial if its text changed."""
        stream = conn.stream
        segments = stream.segments
        msgs = [r.to_dict() for r in segments[conn.finals_sent:]]
        conn.finals_sent = len(segments)
        if not stream.is_done:
            r = stream.result
            key = (r.segment, r.text)
            if r.text and key != conn.last_partial:
                msgs.append(r.to_dict())
            conn.last_partial = key
        return msgs


# -- the CLI ------------------------------------------------------------------------------------------------------


@dataclass
class ServeCommand:
    """Options of ``speechkit serve``."""

    model: str | None = field(default=None, metadata={
        "help": "streaming model: registry name or exported model file; unset: the bundled streaming model"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "interface to listen on (0.0.0.0: every interface; then set a token)"})
    port: int = field(default=8765, metadata={"help": "TCP port (0: a free one)"})
    token: str | None = field(default=None, metadata={
        "help": f"shared secret clients must send (Authorization: Bearer TOKEN, or ?token=); default: ${TOKEN_ENV}"})
    max_streams: int = field(default=16, metadata={"help": "connections streaming at once"})
    max_frame_bytes: int = field(default=64000, metadata={"help": "largest binary (PCM) message, bytes"})
    max_utterance_seconds: float = field(default=3600.0, metadata={"help": "most audio per connection, seconds"})
    idle_timeout_seconds: float = field(default=10.0, metadata={
        "help": "finalise and close a connection that sends no audio for this long, seconds"})
    queue_frames: int = field(default=32, metadata={
        "help": "messages queued per connection before the server stops reading it (backpressure)"})
    batch_wait_ms: float = field(default=10.0, metadata={"help": "wait to gather streams into one batch, ms"})
    sample_rate: int = field(default=16000, metadata={
        "help": "rate of the PCM clients send, Hz (a connection may set its own: ?sample_rate=8000)"})
    endpointing: bool = field(default=True, metadata={"help": "split streams into segments at pauses"})
    trailing_silence: float = field(default=1.2, metadata={"help": "seconds without speech that end a segment"})
    max_utterance: float = field(default=20.0, metadata={"help": "longest segment, seconds"})
    use_vad: bool = field(default=False, metadata={"help": "detect pauses with the bundled VAD model"})
    att_context_size: list[int] | None = field(default=None, metadata={
        "help": "LEFT RIGHT attention context (look-ahead) among those the model was trained with"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1 ..."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; unset: torch's choice"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_server(opts: ServeCommand) -> Server:
    """The :class:`Server` ``speechkit serve`` runs: loads the model, checks the options (not started yet).

    Args:
        opts: the command's options; ``token`` falls back to the environment variable :data:`TOKEN_ENV`.

    Returns:
        A :class:`Server` (call :meth:`Server.serve_forever` or ``await server.start()``).

    Raises:
        ValueError: bad options (named by their ``ServerOptions`` / ``StreamingOptions`` field).
        FileNotFoundError: the model cannot be found.
    """
    if opts.att_context_size is not None and len(opts.att_context_size) != 2:
        raise ValueError(f"--att-context-size takes two numbers (LEFT RIGHT), got {opts.att_context_size}")
    server_opts = ServerOptions(
        host=opts.host, port=opts.port, token=opts.token or os.environ.get(TOKEN_ENV) or None,
        max_streams=opts.max_streams, max_frame_bytes=opts.max_frame_bytes,
        max_utterance_seconds=opts.max_utterance_seconds, idle_timeout_seconds=opts.idle_timeout_seconds,
        queue_frames=opts.queue_frames, batch_wait_ms=opts.batch_wait_ms, sample_rate=opts.sample_rate)

    import torch

    from speechkit.inference.streaming import Recognizer, StreamingOptions

    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    options = StreamingOptions(
        att_context_size=tuple(opts.att_context_size) if opts.att_context_size else None,  # type: ignore[arg-type]
        endpointing=opts.endpointing, trailing_silence=opts.trailing_silence, max_utterance=opts.max_utterance,
        use_vad=opts.use_vad)
    recognizer = Recognizer.from_pretrained(opts.model, options, device=opts.device)
    return Server(recognizer, server_opts, model_name=opts.model or "bundled streaming model")


def serve_command(opts: ServeCommand) -> str:
    """``speechkit serve``: serve until Ctrl-C / SIGTERM; the listening URL goes to stderr when ready.

    Returns:
        A one-line summary of what was served (the CLI prints it).
    """
    server = build_server(opts)
    if server.options.token is None and not _is_loopback(server.options.host):
        print(f"speechkit serve: warning: listening on {server.options.host} without a token: anyone who can reach "
              f"this port can use the server (set --token or ${TOKEN_ENV})", file=sys.stderr)
    server.serve_forever(on_ready=lambda url: print(f"speechkit serve: listening on {url} (health: "
                                                    f"{url[:-4].replace('ws', 'http', 1)}/health)",
                                                    file=sys.stderr, flush=True))
    t = server.totals
    return (f"served {t.connections} connection(s), {t.audio_seconds:.1f} s of audio; {t.rejected} rejected, "
            f"{t.unauthorized} unauthorized, {t.errors} error(s), {t.dropped_messages} message(s) dropped")
