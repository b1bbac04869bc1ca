"""`speechkit transcribe` and `speechkit eval-asr`: output formats, scores checked against an independent WER, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from speechkit import cli
from speechkit.asr import load_model
from speechkit.assets import default_model
from speechkit.inference.commands import EvalASRCommand, eval_asr_command

TINY = Path(__file__).resolve().parents[2] / "manifests" / "tiny"


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model.path)


def test_transcribe_plain_prints_path_tab_text(tiny_model, tiny_audio, model, capsys):
    files = [str(f) for f in tiny_audio]
    assert cli.main(["transcribe", "--model", str(tiny_model.path), "--batch-size", "2", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = model.transcribe(files)
    assert lines == [f"{f}\t{t.text}" for f, t in zip(files, expected, strict=True)]


def test_transcribe_json_lines(tiny_model, tiny_audio, model, capsys):
    files = [str(f) for f in tiny_audio[:2]]
    assert cli.main(["transcribe", "--model", str(tiny_model.path), "--json", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, f, t in zip(lines, files, model.transcribe(files), strict=True):
        obj = json.loads(line)
        assert {"audio", "text", "tokens", "timestamps", "words"} <= set(obj)
        assert obj["audio"] == f and obj["text"] == t.text and obj["tokens"] == t.tokens
        assert [s["token"] for s in obj["timestamps"]] == t.tokens
        assert all(set(s) == {"token", "start", "end"} and s["start"] <= s["end"] for s in obj["timestamps"])
        assert [w["word"] for w in obj["words"]] == t.text.split()
        assert all(set(w) == {"word", "start", "end"} for w in obj["words"])


def test_transcribe_cuda_graphs_flag_is_ignored_on_cpu(tiny_model, tiny_audio, capsys):
    files = [str(f) for f in tiny_audio[:2]]
    assert cli.main(["transcribe", "--model", str(tiny_model.path), "--json", *files]) == 0
    plain = capsys.readouterr().out
    assert cli.main(["transcribe", "--model", str(tiny_model.path), "--json", "--cuda-graphs", *files]) == 0
    assert capsys.readouterr().out == plain


@pytest.mark.cuda
def test_transcribe_with_cuda_graphs_on_gpu(tiny_model, tiny_rnnt_model, tiny_audio, capsys):
    """On a GPU, CUDA-graph decoding prints what the ordinary loop prints (tokens, timestamps), TDT and RNN-T."""
    files = [str(f) for f in tiny_audio]
    for m in (tiny_model, tiny_rnnt_model):
        args = ["transcribe", "--model", str(m.path), "--json", "--device", "cuda", "--batch-size", "2", *files]
        assert cli.main(args) == 0
        plain = capsys.readouterr().out
        assert cli.main([*args, "--cuda-graphs"]) == 0
        assert capsys.readouterr().out == plain


def test_transcribe_errors(tiny_model, tiny_audio, tmp_path, capsys):
    missing = tmp_path / "missing.wav"
    assert cli.main(["transcribe", "--model", str(tiny_model.path), str(tiny_audio[0]), str(missing)]) == 2
    err = capsys.readouterr().err
    assert "audio file not found" in err and "missing.wav" in err
    assert cli.main(["transcribe", "--model", "no-such-model", str(tiny_audio[0])]) == 2
    err = capsys.readouterr().err
    assert "unknown asr model name 'no-such-model'" in err and default_model("asr").name in err


def _levenshtein(a: list[str], b: list[str]) -> int:
    """Word edit distance, written out independently of speechkit.metrics."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.fixture
def eval_manifest(tiny_audio, tmp_path):
    """The tiny test audio with exact durations and raw (un-normalised) references, in a manifest of its own."""
    texts = ["The Formation of the Placenta!", "A glass for beer, 2 of them.", "Success", "It's 10 o'clock"]
    path = tmp_path / "eval.json"
    with open(path, "w") as f:
        for audio, text in zip(tiny_audio, texts, strict=False):
            info = sf.info(str(audio))
            f.write(json.dumps({"audio_filepath": str(audio), "duration": info.frames / info.samplerate,
                                "text": text}) + "\n")
    return path, texts[: len(tiny_audio)]


def test_eval_asr_prints_and_writes_scores(tiny_model, tiny_audio, model, eval_manifest, tmp_path, capsys):
    manifest, texts = eval_manifest
    out_json = tmp_path / "out" / "eval.json"
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(manifest), "--batch-size", "3",
                     "--json-out", str(out_json)]) == 0
    printed = capsys.readouterr().out
    for key in ("WER:", "CER:", "RTFx:", "utterances:", "compute:", "loading:", "worst utterances:"):
        assert key in printed
    report = json.loads(out_json.read_text())
    # Independent scoring: normalised references, our own edit distance, corpus-level rate.
    hyps = [t.text for t in model.transcribe(list(tiny_audio))]
    refs = [model.tokenizer.normalize(t) for t in texts]
    assert "two" in refs[1] and "," not in refs[1]
    errors = sum(_levenshtein(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True))
    words = sum(len(r.split()) for r in refs)
    assert report["wer"]["errors"] == errors
    assert report["wer"]["reference_length"] == words
    assert report["wer"]["rate"] == pytest.approx(errors / words)
    assert f"{100 * errors / words:.2f}%" in printed
    w = report["wer"]
    assert w["substitutions"] + w["deletions"] + w["insertions"] == errors
    assert report["utterances"] == len(texts)
    total = sum(sf.info(str(a)).duration for a in tiny_audio)
    assert report["audio_seconds"] == pytest.approx(total, abs=1e-3)
    assert report["rtfx"] == pytest.approx(report["audio_seconds"] / report["compute_seconds"])
    assert report["compute_seconds"] > 0 and report["load_seconds"] >= 0
    assert 0 < len(report["worst"]) <= 5
    errs = [u["errors"] for u in report["worst"]]
    assert errs == sorted(errs, reverse=True)


def test_eval_asr_limit_and_manifest_paths(tiny_model):
    # Relative audio paths resolve against the manifest's folder, whatever the current directory.
    report = eval_asr_command(EvalASRCommand(str(TINY / "test.json"), str(tiny_model.path), limit=2, worst=1))
    assert report.utterances == 2
    assert report.wer.reference_length > 0 and len(report.worst) <= 1
    assert "WER:" in str(report) and "RTFx:" in str(report)


def test_attention_context_flags(tiny_model, tiny_audio, capsys):
    from speechkit.asr import TranscribeOptions
    from speechkit.inference.commands import TranscribeCommand

    # The CLI's default is the API's (written out there to keep torch out of --help).
    assert TranscribeCommand([]).long_audio_s == TranscribeOptions().long_audio_s
    assert EvalASRCommand("m.json").long_audio_s == TranscribeOptions().long_audio_s
    f = str(tiny_audio[0])
    assert cli.main(["transcribe", "--model", str(tiny_model.path), f, "--att-context-size", "4", "4"]) == 0
    forced = capsys.readouterr().out
    model = load_model(tiny_model.path)
    want = model.transcribe(f, options=TranscribeOptions(att_context_size=(4, 4)))[0].text
    assert forced == f"{f}\t{want}\n"
    assert cli.main(["transcribe", "--model", str(tiny_model.path), f, "--long-audio-s", "0"]) == 0
    assert cli.main(["transcribe", "--model", str(tiny_model.path), f, "--att-context-size", "4"]) == 2
    assert "--att-context-size takes two numbers" in capsys.readouterr().err
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(TINY / "test.json"),
                     "--long-audio-context", "-1", "8"]) == 2
    assert "long_audio_context" in capsys.readouterr().err


def test_transcribe_vad_flag(tiny_model, tiny_audio, tmp_path, capsys):
    import numpy as np

    from speechkit.asr import TranscribeOptions
    from speechkit.audio.io import load_audio

    floor = (1e-3 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    x = np.concatenate([floor, load_audio(tiny_audio[0], sample_rate=16000), floor])
    f = tmp_path / "padded.wav"
    sf.write(f, x, 16000)
    assert cli.main(["transcribe", "--model", str(tiny_model.path), "--vad", "--json", str(f)]) == 0
    got = json.loads(capsys.readouterr().out)
    want = load_model(tiny_model.path).transcribe(str(f), options=TranscribeOptions(vad=True))[0]
    assert got == want.to_dict() and got["segments"]
    assert cli.main(["transcribe", "--model", str(tiny_model.path), "--vad", "--max-segment-s", "0.2", str(f)]) == 2
    assert "max_segment_s" in capsys.readouterr().err


def test_eval_asr_without_model_uses_the_bundled_default(capsys):
    # Like transcribe: no --model means the bundled English model, here scored on its own bundled clips.
    clips = Path(default_model("asr").path).parent / "clips" / "clips.json"
    report = eval_asr_command(EvalASRCommand(str(clips), worst=1))
    assert Path(report.model) == default_model("asr").path
    assert report.utterances == len(clips.read_text().splitlines())
    assert cli.main(["eval-asr", str(clips), "--limit", "1"]) == 0
    assert "WER:" in capsys.readouterr().out


def test_eval_asr_bad_manifest_line_is_named(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"audio_filepath": "a.wav", "duration": 1.0}\n')
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(bad)]) == 2
    assert "bad.json:1" in capsys.readouterr().err


def test_eval_asr_group_by(tiny_model, tiny_audio, model, eval_manifest, tmp_path, capsys):
    """--group-by scores each value of a manifest field on its own; the groups add up to the corpus."""
    manifest, texts = eval_manifest
    lines = manifest.read_text().splitlines()
    engines = ["flite", "espeak-ng", "flite", "espeak-ng"][: len(lines)]
    grouped = tmp_path / "grouped.json"
    grouped.write_text("".join(json.dumps({**json.loads(line), "engine": e}) + "\n"
                               for line, e in zip(lines, engines, strict=True)))
    out_json = tmp_path / "eval.json"
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(grouped), "--group-by", "engine",
                     "--json-out", str(out_json)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["group_by"] == "engine" and sorted(report["groups"]) == sorted(set(engines))
    assert "by engine:" in printed
    hyps = [t.text for t in model.transcribe(list(tiny_audio))]
    refs = [model.tokenizer.normalize(t) for t in texts]
    for name, g in report["groups"].items():
        members = [i for i, e in enumerate(engines) if e == name]
        errors = sum(_levenshtein(refs[i].split(), hyps[i].split()) for i in members)
        assert g["utterances"] == len(members) and g["wer"]["errors"] == errors
        assert g["wer"]["reference_length"] == sum(len(refs[i].split()) for i in members)
        assert any(line.strip().startswith(name) and f"({errors} / " in line for line in printed.splitlines())
    for key in ("utterances", "audio_seconds"):
        assert sum(g[key] for g in report["groups"].values()) == pytest.approx(report[key])
    assert sum(g["wer"]["errors"] for g in report["groups"].values()) == report["wer"]["errors"]
    # a line without the field is named, not dropped
    grouped.write_text(grouped.read_text() + json.dumps({**json.loads(lines[0])}) + "\n")
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(grouped), "--group-by", "engine"]) == 2
    assert f"grouped.json:{len(lines) + 1}" in capsys.readouterr().err


def test_evaluate_manifest_keeps_the_decoding_options(model, eval_manifest):
    """Only timestamps are switched off for scoring; threads, max_symbols and CUDA graphs reach transcribe."""
    from speechkit.inference.evaluate import evaluate_manifest
    from speechkit.inference.offline import TranscribeOptions

    seen = []
    transcribe = model.transcribe

    def spy(*args, **kwargs):
        seen.append(kwargs["options"])
        return transcribe(*args, **kwargs)

    model.transcribe = spy
    try:
        evaluate_manifest(model, eval_manifest[0], options=TranscribeOptions(max_symbols=3, num_threads=1,
                                                                           cuda_graphs=True))
    finally:
        del model.transcribe
    assert seen and all(o == TranscribeOptions(max_symbols=3, timestamps=False, num_threads=1, cuda_graphs=True)
                        for o in seen)


def test_eval_asr_pred_manifest(tiny_model, model, tmp_path, capsys):
    """--pred-manifest writes the scored lines back with pred_text; the file resolves from its own folder and
    can be evaluated again (its pred_text is replaced, not duplicated)."""
    source = TINY / "test.json"
    out = tmp_path / "preds" / "test_pred.json"
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(source), "--limit", "3",
                     "--pred-manifest", str(out)]) == 0
    assert f"predictions: {out}" in capsys.readouterr().out
    originals = [json.loads(line) for line in source.read_text().splitlines()[:3]]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 3
    audio = [(source.parent / o["audio_filepath"]).resolve() for o in originals]
    expected = [t.text for t in model.transcribe([str(a) for a in audio])]
    for o, w, a, hyp in zip(originals, written, audio, expected, strict=True):
        assert w["pred_text"] == hyp
        assert (out.parent / w["audio_filepath"]).resolve() == a
        assert {k: v for k, v in w.items() if k not in ("audio_filepath", "pred_text")} == \
            {k: v for k, v in o.items() if k != "audio_filepath"}
    again = tmp_path / "again.json"
    report = eval_asr_command(EvalASRCommand(str(out), str(tiny_model.path), pred_manifest=str(again)))
    assert report.predictions == str(again) and report.to_dict()["predictions"] == str(again)
    rewritten = [json.loads(line) for line in again.read_text().splitlines()]
    assert [r.pop("pred_text") for r in rewritten] == expected
    assert [(again.parent / r.pop("audio_filepath")).resolve() for r in rewritten] == audio
    assert rewritten == [{k: v for k, v in w.items() if k not in ("audio_filepath", "pred_text")} for w in written]
    # writing over the manifest being scored is refused, naming it
    assert cli.main(["eval-asr", "--model", str(tiny_model.path), str(out), "--pred-manifest", str(out)]) == 2
    assert str(out) in capsys.readouterr().err


def test_transcribe_manifest_inputs(tiny_model, tiny_audio, model, tmp_path, capsys):
    """Manifests among the inputs: each line is transcribed (its offset/duration span), outputs keep the inputs'
    order, and --pred-manifest writes the lines back with pred_text."""
    source = TINY / "test.json"
    lines = [json.loads(line) for line in source.read_text().splitlines()]
    # a second manifest, elsewhere, with an offset line: the second half of the first file's audio
    first = (source.parent / lines[0]["audio_filepath"]).resolve()
    half = sf.info(str(first)).duration / 2
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"audio_filepath": str(first), "offset": half, "duration": half}) + "\n")
    args = ["transcribe", "--model", str(tiny_model.path), "--batch-size", "3"]
    assert cli.main([*args, str(tiny_audio[1]), str(source), str(other), str(tiny_audio[0])]) == 0
    printed = capsys.readouterr().out.splitlines()
    import numpy as np

    wave, rate = sf.read(str(first), dtype="float32")
    start = round(half * rate)
    span = np.ascontiguousarray(wave[start: start + round(half * rate)])
    audio = [(source.parent / line["audio_filepath"]).resolve() for line in lines]
    expected = ([f"{tiny_audio[1]}\t{model.transcribe([str(tiny_audio[1])])[0].text}"]
                + [f"{line['audio_filepath']}\t{t.text}"
                   for line, t in zip(lines, model.transcribe([str(a) for a in audio]), strict=True)]
                + [f"{first}@{half:g}\t{model.transcribe([span], sample_rate=rate)[0].text}"]
                + [f"{tiny_audio[0]}\t{model.transcribe([str(tiny_audio[0])])[0].text}"])
    assert printed == expected
    # --json: the same texts, with token timestamps inside each line's span
    assert cli.main([*args, "--json", str(other)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["audio"] == f"{first}@{half:g}" and record["text"] == expected[-2].split("\t")[1]
    assert len(record["timestamps"]) == len(record["tokens"])
    assert all(0 <= s["start"] <= half + 1e-6 for s in record["timestamps"])
    out = tmp_path / "preds" / "pred.json"
    assert cli.main([*args, str(source), str(other), "--pred-manifest", str(out)]) == 0
    capsys.readouterr()
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["pred_text"] for w in written] == [e.split("\t")[1] for e in expected[1:-1]]
    assert [(out.parent / w["audio_filepath"]).resolve() for w in written] == [*audio, first]
    assert written[-1]["offset"] == half and written[0]["text"] == lines[0]["text"]
    # errors, before the model loads: audio inputs with --pred-manifest, writing over an input, a missing manifest
    assert cli.main([*args, str(source), str(tiny_audio[0]), "--pred-manifest", str(out)]) == 2
    assert str(tiny_audio[0]) in capsys.readouterr().err
    assert cli.main([*args, str(other), "--pred-manifest", str(other)]) == 2
    assert "is one of the input manifests" in capsys.readouterr().err
    assert cli.main([*args, str(tmp_path / "nope.json")]) == 2
    assert "manifest not found" in capsys.readouterr().err
