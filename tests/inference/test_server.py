"""`speechkit serve`: many concurrent WebSocket clients decoded in shared batches give each client exactly the
tokens of a local stream of the same audio; disconnects, limits, tokens, bad frames, idle timeout, 8 kHz clients,
backpressure, the CLI. The server runs in-process on 127.0.0.1, port 0, with a tiny random-weight streaming model."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from speechkit import cli
from speechkit.audio.io import load_audio
from speechkit.inference.client import ServerRejectedError, StreamingClient, to_pcm16
from speechkit.inference.server import ServeCommand, Server, ServerOptions, build_server
from speechkit.inference.streaming import Recognizer, StreamingOptions

TINY = Path(__file__).resolve().parents[2] / "manifests" / "tiny"
WAVS = sorted((TINY / "audio" / "test").glob("*.wav"))


def make_streaming_model(out: Path) -> Path:
    """A tiny random-weight cache-aware FastConformer TDT model file (as tests/inference/test_stream_cli.py)."""
    import torch

    from speechkit.audio.features import FeatureConfig
    from speechkit.config import to_yaml
    from speechkit.modules.asr import ASRModelConfig, TransducerASR
    from speechkit.modules.export import save_model_file
    from speechkit.modules.fastconformer import FastConformerConfig
    from speechkit.text.tokenizer import TokenizerTrainConfig, train_tokenizer_from_manifests

    tok = train_tokenizer_from_manifests([TINY / "train.json"], out / "tok", TokenizerTrainConfig(vocab_size=40))
    torch.manual_seed(0)
    encoder = FastConformerConfig.preset(
        "tiny", causal_downsampling=True, conv_context="causal", conv_norm="layer_norm", subsampling_channels=32,
        att_context_style="chunked_limited", att_context_size=(4, 1))
    cfg = ASRModelConfig(features=FeatureConfig(normalize="none", dither=0.0), encoder=encoder, model_type="tdt",
                         vocab_size=tok.vocab_size, pred_hidden=32, joint_hidden=32)
    net = TransducerASR.from_config(cfg).eval()
    with torch.no_grad():
        net.joint.out.weight.mul_(4.0)
    return save_model_file(out / "model.safetensors", net, to_yaml(cfg), tok, dtype=torch.float32)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: the tiny model gains nothing from more, and spinning OpenMP workers make a busy machine
    much slower (restored afterwards for the other test modules)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_streaming_model(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def recognizer(model_path) -> Recognizer:
    return Recognizer.from_pretrained(model_path, StreamingOptions(endpointing=False))


def pcm(path: Path, rate: int) -> np.ndarray:
    """The file at ``rate`` as int16 samples: exactly what a client sends."""
    x = load_audio(path, sample_rate=rate)
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def local_result(recognizer: Recognizer, samples: np.ndarray, rate: int) -> dict[str, Any]:
    """The final result of one local stream fed the whole audio at once."""
    stream = recognizer.create_stream()
    stream.accept_waveform(rate, samples.astype(np.float32) / 32768)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode([stream])
    assert stream.is_done
    return stream.result.to_dict()


@pytest.fixture(scope="module")
def expected(recognizer) -> dict[tuple[int, int], dict[str, Any]]:
    """(file index, rate) -> the local final result."""
    out = {}
    for i, path in enumerate(WAVS):
        for rate in (16000, 8000):
            out[i, rate] = local_result(recognizer, pcm(path, rate), rate)
    assert all(r["tokens"] for r in out.values()), "the test model should emit tokens for every file"
    return out


def run_with_server(recognizer: Recognizer, options: ServerOptions, body) -> Any:
    """Start a server, run ``await body(server)``, stop the server (also on failure)."""

    async def main() -> Any:
        server = Server(recognizer, options, model_name="tiny")
        await server.start()
        try:
            return await asyncio.wait_for(body(server), 120)  # a guard against hangs, not a speed test
        finally:
            await server.stop()

    return asyncio.run(main())


async def stream_audio(url: str, samples: np.ndarray, rate: int | None, chunk: int, token: str | None = None,
                       end: bool = True, sent: list[int] | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Send int16 ``samples`` in chunks of ``chunk`` samples while reading (``sent`` gets one item per chunk
    sent); returns (messages, close code)."""
    async with StreamingClient(url, sample_rate=rate, token=token) as client:
        messages: list[dict[str, Any]] = []

        async def collect() -> None:
            async for msg in client:
                messages.append(msg)

        reader = asyncio.create_task(collect())
        try:
            for i in range(0, samples.shape[0], chunk):
                await client.send_audio(samples[i: i + chunk])
                if sent is not None:
                    sent.append(i)
                await asyncio.sleep(0)
            if end:
                await client.end()
        except ConnectionError:  # the server may close first (a length limit): its messages tell why
            pass
        await reader
        return messages, client.close_code


async def get_health(server: Server) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(server.url.replace("ws://", "http://")[:-4]
                                                              + "/health") as resp:
        assert resp.status == 200
        return await resp.json()


def finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "final"]


def check_stream(messages: list[dict[str, Any]], want: dict[str, Any]) -> None:
    """One final equal to the local result (token-exact, same times), last; partials are prefixes of it."""
    assert [m["type"] for m in messages if m["type"] == "error"] == []
    assert messages[-1]["type"] == "final" and len(finals(messages)) == 1
    assert messages[-1] == want
    for m in messages[:-1]:
        assert m["type"] == "partial"
        pieces = [t["token"] for t in m["tokens"]]
        assert pieces == [t["token"] for t in want["tokens"]][: len(pieces)]


def test_concurrent_clients_get_the_local_result_and_a_disconnect_harms_none(recognizer, expected):
    jobs = [(i % len(WAVS), 8000 if i in (3, 6) else 16000, 400 + 170 * i) for i in range(9)]

    async def body(server: Server):
        async def quitter() -> None:
            # Sends half its audio, then drops the TCP connection with no close handshake.
            x = pcm(WAVS[0], 16000)
            client = await StreamingClient(server.url, 16000).connect()
            for i in range(0, x.shape[0] // 2, 800):
                await client.send_audio(x[i: i + 800])
                await asyncio.sleep(0.005)
            await client.abort()

        runs = [stream_audio(server.url, pcm(WAVS[f], rate), None if rate == 16000 and k % 2 else rate, chunk)
                for k, (f, rate, chunk) in enumerate(jobs)]
        results = await asyncio.gather(quitter(), *runs)
        for _ in range(100):  # the server notices the dropped connection on its own schedule
            health = await get_health(server)
            if health["active_streams"] == 0:
                break
            await asyncio.sleep(0.05)
        return results[1:], health

    results, health = run_with_server(recognizer, ServerOptions(max_streams=12, batch_wait_ms=5), body)
    for (f, rate, _), (messages, code) in zip(jobs, results, strict=True):
        check_stream(messages, expected[f, rate])
        assert code == 1000
    assert health["status"] == "ok" and health["active_streams"] == 0 and health["max_streams"] == 12
    assert health["model"] == "tiny" and health["uptime_seconds"] > 0
    totals = health["totals"]
    assert totals["connections"] == 10 and totals["errors"] == 0 and totals["rejected"] == 0
    # Streams of different clients were decoded in the same network call.
    assert totals["max_batch"] > 1


def test_one_stream_too_many_gets_an_error_and_a_close(recognizer, expected):
    async def body(server: Server):
        a = await StreamingClient(server.url).connect()
        b = await StreamingClient(server.url).connect()
        await asyncio.sleep(0.05)
        async with StreamingClient(server.url) as c:
            first = await c.receive(timeout=10)
            after = await c.receive(timeout=10)
            code = c.close_code
        held = (await get_health(server))["active_streams"]
        for client in (a, b):
            await client.send_audio(pcm(WAVS[1], 16000))
            await client.end()
        got = [[m async for m in client] for client in (a, b)]
        await a.close()
        await b.close()
        # With room again, a new client is served.
        again, _ = await stream_audio(server.url, pcm(WAVS[2], 16000), 16000, 1600)
        return first, after, code, held, got, again, await get_health(server)

    first, after, code, held, got, again, health = run_with_server(
        recognizer, ServerOptions(max_streams=2, idle_timeout_seconds=None), body)
    assert first["type"] == "error" and first["code"] == "too_many_streams" and "2" in first["message"]
    assert after is None and code == 1013
    assert held == 2
    for messages in got:
        check_stream(messages, expected[1, 16000])
    check_stream(again, expected[2, 16000])
    assert health["totals"]["rejected"] == 1 and health["totals"]["connections"] == 3


def test_token(recognizer, expected):
    async def body(server: Server):
        statuses = []
        for token in (None, "wrong"):
            with pytest.raises(ServerRejectedError) as err:
                await StreamingClient(server.url, token=token).connect()
            statuses.append(err.value.status)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(server.url + "?token=wrong")
            statuses.append(err.value.status)
            # The token in the query works as well as the header.
            async with session.ws_connect(server.url + "?token=s3cret") as ws:
                x = pcm(WAVS[3], 16000)
                for i in range(0, x.shape[0], 16000):
                    await ws.send_bytes(to_pcm16(x[i: i + 16000]))
                await ws.send_str("EOS")
                by_query = [json.loads(m.data) async for m in ws]
        by_header, _ = await stream_audio(server.url, pcm(WAVS[3], 16000), 16000, 3200, token="s3cret")
        return statuses, by_query, by_header, await get_health(server)

    statuses, by_query, by_header, health = run_with_server(recognizer, ServerOptions(token="s3cret"), body)
    assert statuses == [401, 401, 401]
    check_stream(by_query, expected[3, 16000])
    check_stream(by_header, expected[3, 16000])
    assert health["totals"]["unauthorized"] == 3 and health["totals"]["connections"] == 2


def test_invalid_messages_get_errors_and_the_server_goes_on(recognizer, expected):
    limit = 4000

    async def body(server: Server):
        x = pcm(WAVS[1], 16000)
        async with StreamingClient(server.url) as client:
            errors = []
            await client.send_audio(x[:1000])
            early: list[dict[str, Any]] = []  # partials that come in between

            async def next_error() -> dict[str, Any]:
                while (msg := await client.receive(timeout=10))["type"] != "error":
                    early.append(msg)
                return msg

            for bad in (b"\x01\x02\x03", bytes(limit + 2)):
                await client.send_audio(bad)
                errors.append(await next_error())
            for text in ("{not json", '{"type": "reset"}', "[1, 2]"):
                await client.ws.send_str(text)
                errors.append(await next_error())
            for i in range(1000, x.shape[0], 1000):  # the connection goes on: the rest of the audio
                await client.send_audio(x[i: i + 1000])
            await client.end()
            rest = early + [m async for m in client]
            code = client.close_code
        # A message far over the limit breaks the protocol: the WebSocket layer closes that connection (1009) ...
        async with StreamingClient(server.url) as client:
            await client.send_audio(bytes(8 * limit))
            huge = await client.receive(timeout=10)
            huge_code = client.close_code
        # ... and the server serves the next client.
        nxt, _ = await stream_audio(server.url, pcm(WAVS[2], 16000), 16000, 1000)
        return errors, rest, code, huge, huge_code, nxt, await get_health(server)

    errors, rest, code, huge, huge_code, nxt, health = run_with_server(
        recognizer, ServerOptions(max_frame_bytes=limit), body)
    assert [e["type"] for e in errors] == ["error"] * 5
    assert [e["code"] for e in errors] == ["odd_frame_length", "frame_too_large", "bad_message", "unknown_message",
                                           "bad_message"]
    assert "3 bytes" in errors[0]["message"] and f"{limit}" in errors[1]["message"]
    # The bad frames were dropped, not decoded: the result is the file's.
    check_stream(rest, expected[1, 16000])
    assert code == 1000
    assert huge is None and huge_code == 1009
    check_stream(nxt, expected[2, 16000])
    assert health["totals"]["errors"] >= 6 and health["active_streams"] == 0


def test_idle_timeout_finalises_and_closes(recognizer, expected):
    async def body(server: Server):
        loop = asyncio.get_running_loop()
        async with StreamingClient(server.url) as silent:
            t0 = loop.time()
            silent_msgs = [m async for m in silent]
            waited = loop.time() - t0
            silent_code = silent.close_code
        # Audio but no end message: the idle timeout ends the stream, and the final covers all the audio.
        x = pcm(WAVS[2], 16000)
        paused, code = await stream_audio(server.url, x, 16000, x.shape[0], end=False)
        return silent_msgs, waited, silent_code, paused, code

    silent_msgs, waited, silent_code, paused, code = run_with_server(
        recognizer, ServerOptions(idle_timeout_seconds=0.5), body)
    assert len(silent_msgs) == 1 and silent_msgs[0]["type"] == "final" and silent_msgs[0]["text"] == ""
    assert silent_code == 1000 and 0.45 <= waited < 30
    check_stream(paused, expected[2, 16000])
    assert code == 1000


def test_utterance_limit_cuts_and_finalises(recognizer):
    async def body(server: Server):
        return await stream_audio(server.url, pcm(WAVS[0], 16000), 16000, 1600)

    (messages, code) = run_with_server(recognizer, ServerOptions(max_utterance_seconds=1.0), body)
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["utterance_too_long"] + ["audio_after_end"] * len(errors[1:])
    last = messages[-1]
    assert last["type"] == "final" and len(finals(messages)) == 1 and code == 1000
    want = local_result(recognizer, pcm(WAVS[0], 16000)[:16000], 16000)
    assert last == want and last["end"] <= 1.0 + 1e-6


def test_backpressure_bounds_what_the_server_reads(recognizer, expected, monkeypatch):
    """While decoding is stalled, the server reads at most about 2 x queue_frames messages of a fast client; once
    decoding resumes, every frame is read and the result is exact."""
    gate = threading.Event()
    real_decode = recognizer.decode

    def stalled_decode(streams):
        gate.wait(30)
        real_decode(streams)

    monkeypatch.setattr(recognizer, "decode", stalled_decode)
    frames, queue = 60, 3

    async def body(server: Server):
        x = pcm(WAVS[0], 16000)
        step = -(-x.shape[0] // frames)
        assert -(-x.shape[0] // step) == frames
        sent: list[int] = []
        sender = asyncio.create_task(stream_audio(server.url, x, 16000, step, sent=sent))
        # Wait until the client has sent everything (its kernel socket buffers take it) and the server has stopped
        # reading.
        read = -1
        for _ in range(200):
            await asyncio.sleep(0.1)
            now = (await get_health(server))["totals"]["frames_received"]
            if len(sent) == frames and now == read:
                break
            read = now
        while_stalled, sent_while_stalled = read, len(sent)
        gate.set()
        messages, _ = await sender
        return while_stalled, sent_while_stalled, messages, (await get_health(server))["totals"]["frames_received"]

    try:
        while_stalled, sent_while_stalled, messages, total = run_with_server(
            recognizer, ServerOptions(queue_frames=queue, batch_wait_ms=0), body)
    finally:
        gate.set()
    # What the stalled server read: the frames fed before the first chunk was complete, the queue, one in hand.
    assert sent_while_stalled == frames
    assert 1 <= while_stalled <= queue + 12 < frames
    assert total == frames
    check_stream(messages, expected[0, 16000])


def test_a_stalled_client_is_dropped_and_the_others_are_served(recognizer, expected, monkeypatch):
    """A client whose socket writes never complete (a vanished peer) is disconnected after send_timeout_seconds;
    the decode loop and the other clients do not wait for it."""
    real_send = web.WebSocketResponse.send_str

    async def send_str(self, data, compress=None):
        if self._req is not None and self._req.query.get("stall"):
            await asyncio.sleep(3600)
        return await real_send(self, data, compress)

    monkeypatch.setattr(web.WebSocketResponse, "send_str", send_str)

    async def body(server: Server):
        stalled = await StreamingClient(server.url + "?stall=1").connect()
        x = pcm(WAVS[0], 16000)
        await stalled.send_audio(x[:16000])
        await stalled.send_audio(x[16000:32000])
        await stalled.end()
        others = await asyncio.gather(*(stream_audio(server.url, pcm(WAVS[f], 16000), 16000, 1600)
                                        for f in (1, 2, 3)))
        lost = [m async for m in stalled]
        await stalled.close()
        return others, lost, await get_health(server)

    others, lost, health = run_with_server(recognizer, ServerOptions(send_timeout_seconds=1.0), body)
    for f, (messages, code) in zip((1, 2, 3), others, strict=True):
        check_stream(messages, expected[f, 16000])
        assert code == 1000
    assert lost == []
    assert health["totals"]["dropped_clients"] == 1 and health["totals"]["dropped_messages"] >= 1
    assert health["active_streams"] == 0


def test_serve_forever_and_the_blocking_helper(recognizer, expected, tmp_path):
    import soundfile as sf

    from speechkit.inference.client import transcribe_file

    wav8 = tmp_path / "a8k.wav"
    sf.write(wav8, pcm(WAVS[3], 8000), 8000, subtype="PCM_16")
    server = Server(recognizer, ServerOptions())
    urls: list[str] = []
    ready = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(lambda url: (urls.append(url), ready.set()),))
    thread.start()
    try:
        assert ready.wait(20)
        messages = transcribe_file(urls[0], wav8, chunk_seconds=0.05)
    finally:
        server.shutdown()
        thread.join(20)
    assert not thread.is_alive()
    assert urls[0].startswith("ws://127.0.0.1:") and urls[0].endswith("/asr")
    check_stream(messages, expected[3, 8000])
    assert server.totals.connections == 1


def test_options_are_validated():
    for bad, field in ((dict(port=70000), "port"), (dict(max_streams=0), "max_streams"),
                       (dict(token=""), "token"), (dict(sample_rate=10), "sample_rate"),
                       (dict(idle_timeout_seconds=0), "idle_timeout_seconds"), (dict(queue_frames=0), "queue_frames"),
                       (dict(batch_wait_ms=-1), "batch_wait_ms"), (dict(max_frame_bytes=1), "max_frame_bytes")):
        with pytest.raises(ValueError, match=f"ServerOptions.{field}="):
            ServerOptions(**bad)


def test_bad_sample_rate_query_is_refused(recognizer):
    async def body(server: Server):
        with pytest.raises(ServerRejectedError) as err:
            await StreamingClient(server.url + "?sample_rate=abc").connect()
        return err.value.status

    assert run_with_server(recognizer, ServerOptions(), body) == 400


def test_cli_help_and_build_server(model_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--host", "--port", "--token", "--max-streams", "--max-frame-bytes",
                 "--max-utterance-seconds", "--idle-timeout-seconds", "--queue-frames", "--batch-wait-ms",
                 "--sample-rate", "--att-context-size", "--no-endpointing"):
        assert flag in out
    assert "ws://HOST:PORT/asr" in out and "SPEECHKIT_SERVE_TOKEN" in out
    monkeypatch.setenv("SPEECHKIT_SERVE_TOKEN", "from-env")
    server = build_server(ServeCommand(model=str(model_path), port=0, max_streams=3, endpointing=False))
    assert server.options.token == "from-env" and server.options.max_streams == 3
    assert server.recognizer.options.endpointing is False
    assert build_server(ServeCommand(model=str(model_path), token="flag")).options.token == "flag"
    with pytest.raises(ValueError, match="ServerOptions.port="):
        build_server(ServeCommand(model=str(model_path), port=-1))


def test_endpointed_segments_each_get_a_final(model_path):
    """With endpointing, every segment's final reaches the client, equal to a local stream's segments."""
    rec = Recognizer.from_pretrained(model_path, StreamingOptions(endpointing=True, max_utterance=0.5))
    x = pcm(WAVS[0], 16000)
    stream = rec.create_stream()
    stream.accept_waveform(16000, x.astype(np.float32) / 32768)
    stream.input_finished()
    while rec.is_ready(stream):
        rec.decode([stream])
    want = [r.to_dict() for r in stream.segments]
    assert len(want) >= 4

    async def body(server: Server):
        return await stream_audio(server.url, x, 16000, 1300)

    messages, code = run_with_server(rec, ServerOptions(), body)
    # Token times included: at an endpoint they are clamped to the segment's decoded end, not to the audio received
    # so far, so they do not depend on how fast the client sent it.
    assert finals(messages) == want
    assert messages[-1]["type"] == "final" and code == 1000
    assert [m["segment"] for m in finals(messages)] == list(range(len(want)))
    for m in messages:
        if m["type"] == "partial":
            seg = want[m["segment"]]["tokens"]
            assert [t["token"] for t in m["tokens"]] == [t["token"] for t in seg][: len(m["tokens"])]
