"""A small Python client for ``speechkit serve`` (protocol: :mod:`speechkit.inference.server`).

Async, for live audio::

    async with StreamingClient("ws://127.0.0.1:8765/asr", sample_rate=16000) as client:
        for chunk in microphone():                  # float32 in [-1, 1], int16, or raw s16le bytes
            await client.send_audio(chunk)
        await client.end()
        async for msg in client:                    # partials, finals (and errors) until the server closes
            print(msg["type"], msg["text"])

Blocking, for a file: ``transcribe_file("ws://127.0.0.1:8765/asr", "a.wav")`` returns every message received.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np

__all__ = ["ServerRejectedError", "StreamingClient", "to_pcm16", "transcribe_file", "transcribe_file_async"]


class ServerRejectedError(ConnectionError):
    """The server refused the WebSocket handshake (``status``: 401 wrong token, 400 bad query, 404 wrong path)."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"{url}: the server refused the connection: HTTP {status} {message}")
        self.status = status


def _with_query(url: str, sample_rate: int | None) -> str:
    from yarl import URL

    u = URL(url)
    if u.path in ("", "/"):
        u = u.with_path("/asr")
    if sample_rate is not None:
        u = u.update_query(sample_rate=str(int(sample_rate)))
    return str(u)


def to_pcm16(samples: np.ndarray | bytes) -> bytes:
    """Audio as signed 16-bit little-endian PCM bytes.

    Args:
        samples: ``(N,)`` float samples in [-1, 1] (clipped, rounded), ``(N,)`` int16 samples, or bytes (as is).

    Returns:
        ``2 N`` bytes.

    Raises:
        ValueError: not 1-D, or neither float nor int16.
    """
    if isinstance(samples, (bytes, bytearray, memoryview)):
        return bytes(samples)
    a = np.asarray(samples)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono samples of shape (N,), got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.round(a * 32768.0), -32768, 32767)
    elif a.dtype != np.int16:
        raise ValueError(f"audio must be float in [-1, 1] or int16, got dtype {a.dtype}")
    return a.astype("<i2").tobytes()


class StreamingClient:
    """One streaming-recognition connection to a ``speechkit serve`` server.

    Args:
        url: ``ws://HOST:PORT/asr`` (``ws://HOST:PORT`` gets ``/asr`` added).
        sample_rate: rate of the audio this client sends, Hz (sent as ``?sample_rate=``); ``None``: the server's
            default.
        token: the server's shared secret (sent as ``Authorization: Bearer TOKEN``).
        connect_timeout: seconds allowed for the handshake.

    Example:
        >>> async with StreamingClient("ws://127.0.0.1:8765/asr") as c:  # doctest: +SKIP
        ...     await c.send_audio(samples); await c.end()
        ...     messages = [m async for m in c]
    """

    def __init__(self, url: str, sample_rate: int | None = None, token: str | None = None,
                 connect_timeout: float = 10.0) -> None:
        self.url = _with_query(url, sample_rate)
        self.token = token
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> StreamingClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> StreamingClient:
        """Open the connection.

        Returns:
            ``self``.

        Raises:
            ServerRejectedError: the server answered the handshake with an HTTP error (401: token).
            aiohttp.ClientError: the server cannot be reached.
        """
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(
                self.url, headers=headers, autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                max_msg_size=0)
        except aiohttp.WSServerHandshakeError as err:
            await self._session.close()
            raise ServerRejectedError(self.url, err.status, err.message) from None
        except BaseException:
            await self._session.close()
            raise
        return self

    @property
    def ws(self) -> aiohttp.ClientWebSocketResponse:
        """The underlying aiohttp WebSocket.

        Raises:
            RuntimeError: not connected.
        """
        if self._ws is None:
            raise RuntimeError("not connected: await client.connect() (or use 'async with')")
        return self._ws

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once closed (1000 normal, 1013 too many streams, 1009 message too big)."""
        return None if self._ws is None else self._ws.close_code

    async def send_audio(self, samples: np.ndarray | bytes) -> None:
        """Send audio: ``(N,)`` float in [-1, 1], ``(N,)`` int16, or raw s16le bytes (sent as they are)."""
        await self.ws.send_bytes(to_pcm16(samples))

    async def end(self) -> None:
        """Tell the server the utterance is over (it then sends the final result(s) and closes)."""
        await self.ws.send_str(json.dumps({"type": "end"}))

    async def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next JSON message from the server, or ``None`` once the connection is closed.

        Args:
            timeout: seconds to wait (``None``: no limit).

        Raises:
            asyncio.TimeoutError: nothing came within ``timeout``.
        """
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type == aiohttp.WSMsgType.TEXT:
                return json.loads(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
                return None
            # Binary messages are not part of the protocol server -> client: skipped.

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while (msg := await self.receive()) is not None:
            yield msg

    async def close(self) -> None:
        """Close the connection politely (a WebSocket close handshake) and the HTTP session."""
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self._ws = self._session = None

    async def abort(self) -> None:
        """Drop the TCP connection with no close handshake (as a crashed client or a lost network would)."""
        if self._ws is not None:
            conn = self._ws._response.connection  # aiohttp has no public way to drop a WebSocket's transport
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
        if self._session is not None:
            await self._session.close()
        self._ws = self._session = None


async def transcribe_file_async(url: str, path: str | os.PathLike[str], chunk_seconds: float = 0.1,
                                realtime: bool = False, token: str | None = None) -> list[dict[str, Any]]:
    """Stream a file to the server and collect every message it sends back (the async form of
    :func:`transcribe_file`)."""
    from speechkit.audio.io import audio_info, load_audio

    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds!r}")
    rate = audio_info(path).sample_rate
    samples = load_audio(path, sample_rate=rate)  # the file's own rate: the server's stream resamples
    step = max(1, round(rate * chunk_seconds))
    messages: list[dict[str, Any]] = []
    async with StreamingClient(url, sample_rate=rate, token=token) as client:

        async def collect() -> None:
            async for msg in client:
                messages.append(msg)

        # Results are read while audio is sent, as a live client does (the server drops partials nobody reads).
        reader = asyncio.create_task(collect())
        t0 = time.perf_counter()
        try:
            for start in range(0, samples.shape[0], step):
                chunk = samples[start: start + step]
                if realtime:
                    delay = (start + chunk.shape[0]) / rate - (time.perf_counter() - t0)
                    if delay > 0:
                        await asyncio.sleep(delay)
                if reader.done():  # the server closed early (an error): stop sending
                    break
                await client.send_audio(chunk)
            if not reader.done():
                await client.end()
            await reader
        finally:
            reader.cancel()
    return messages


def transcribe_file(url: str, path: str | os.PathLike[str], chunk_seconds: float = 0.1, realtime: bool = False,
                    token: str | None = None) -> list[dict[str, Any]]:
    """Stream an audio file to a ``speechkit serve`` server and return the messages it sent back.

    Blocks (runs its own event loop: inside a running loop, await :func:`transcribe_file_async` instead).

    Args:
        url: ``ws://HOST:PORT/asr``.
        path: any audio file speechkit reads; sent at its own rate (``?sample_rate=``), as 16-bit PCM.
        chunk_seconds: audio per binary message.
        realtime: send no faster than real time (as a live source would).
        token: the server's shared secret, if it has one.

    Returns:
        The server's JSON messages in order: ``partial`` ones, ``final`` ones (the last message of a normal run is
        a final), and any ``error`` ones.

    Raises:
        ServerRejectedError: HTTP error at the handshake (401: missing or wrong token).
        FileNotFoundError: no such file.
    """
    return asyncio.run(transcribe_file_async(url, path, chunk_seconds, realtime, token))
