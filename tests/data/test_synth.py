"""The corpus builder: voice-disjoint splits, sentence-disjoint splits, determinism, resuming, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechkit import cli
from speechkit.data.texts import available_sources
from speechkit.data.synth import SPLITS, SynthConfig, plan_language, plan_utterances, prepare_synth, transcript_of
from speechkit.data.tts import find_voices

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                                reason="needs espeak-ng and flite (make setup installs them)")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _corpus(out: Path) -> dict[str, list[dict]]:
    return {s: _lines(out / f"{s}.json") for s in SPLITS}


def test_plan_holds_out_voice_groups_variants_and_sentences():
    cfg = SynthConfig(seed=3)
    plan = plan_language("en", cfg)
    groups = {s: {v.group for v in plan.voices[s]} for s in SPLITS}
    assert not groups["test"] & groups["train"] and not groups["dev"] & groups["train"]
    assert not groups["test"] & groups["dev"]
    # Held-out splits hear more than one engine, and every installed group is used somewhere.
    assert len({v.engine for v in plan.voices["test"]}) >= 2
    assert set().union(*groups.values()) == {v.group for v in find_voices("en", cfg.engines or
                                                                         ["espeak-ng", "flite", "festival"])}
    variants = {s: set(plan.variants[s]) for s in SPLITS}
    assert not variants["test"] & variants["train"] and not variants["dev"] & variants["train"]
    test = {transcript_of(t, "en") for t in plan.sentences["test"]}
    dev = {transcript_of(t, "en") for t in plan.sentences["dev"]}
    assert not test & dev and plan.held_out == test | dev
    assert not plan.by_variant_only


def test_training_sentences_with_a_held_out_transcript_are_passed_over():
    cfg = SynthConfig(seed=0, dev_fraction=0.3, test_fraction=0.3)
    plan = plan_language("en", cfg)
    # Spelled differently, read the same: the normaliser makes both "doctor who came home".
    plan.sentences = {"test": ["Dr. Who came home."], "dev": ["Some other words here."],
                      "train": ["Doctor Who came home!", "A fresh start today."]}
    plan.held_out = {transcript_of(t, "en") for t in plan.sentences["test"] + plan.sentences["dev"]}
    assert transcript_of("Doctor Who came home!", "en") in plan.held_out
    stream = plan_utterances(plan, cfg)
    train = [u.sentence for u in (next(stream) for _ in range(30)) if u.split == "train"]
    assert train and set(train) == {"A fresh start today."}


def test_zero_fractions_hold_nothing_out_and_exclude_drops_another_corpus_held_out_sentences(tmp_path):
    # The use: extra training voices for an existing corpus, with none of that corpus's dev/test sentences.
    held = SynthConfig(seed=0)
    other = plan_language("en", held)
    manifest = tmp_path / "held_out.json"
    sentences = other.sentences["test"][:40] + other.sentences["dev"][:40]
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0, "text": transcript_of(t, "en")})
                                + "\n" for i, t in enumerate(sentences)))
    cfg = SynthConfig(seed=0, dev_fraction=0.0, test_fraction=0.0, exclude=[str(manifest)])
    plan = plan_language("en", cfg)
    assert plan.voices["test"] == plan.voices["dev"] == [] and plan.sentences["test"] == plan.sentences["dev"] == []
    assert {v.group for v in plan.voices["train"]} == {v.group for v in find_voices("en", ["espeak-ng", "flite",
                                                                                             "festival"])}
    assert plan.variants["train"] and not plan.variants["test"] and not plan.variants["dev"]
    excluded = {transcript_of(t, "en") for t in sentences}
    assert not excluded & {transcript_of(t, "en") for t in plan.sentences["train"]}
    assert plan.rejected["excluded by --exclude"] == len(excluded)
    stream = plan_utterances(plan, cfg)
    assert {next(stream).split for _ in range(50)} == {"train"}
    # Only the excluded sentences are missing: the rest of the pool keeps its order.
    assert plan.sentences["train"] == [t for t in plan_language("en", SynthConfig(seed=0, dev_fraction=0.0,
                                       test_fraction=0.0)).sentences["train"] if transcript_of(t, "en") not in excluded]
    bad = tmp_path / "bad.json"
    bad.write_text('{"audio_filepath": "a.wav", "duration": 1.0, "text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.json:2: not valid JSON"):
        plan_language("en", SynthConfig(seed=0, exclude=[str(bad)]))


def test_plan_stream_is_a_function_of_the_seed():
    cfg = SynthConfig(seed=1)
    a = plan_utterances(plan_language("en", cfg), cfg)
    b = plan_utterances(plan_language("en", cfg), cfg)
    first = [next(a) for _ in range(50)]
    assert first == [next(b) for _ in range(50)]
    assert {u.split for u in first} == set(SPLITS)
    other = plan_utterances(plan_language("en", SynthConfig(seed=2)), SynthConfig(seed=2))
    assert [next(other) for _ in range(50)] != first


def test_build_is_voice_and_sentence_disjoint_and_independent_of_jobs(tmp_path):
    common = dict(hours=0.02, max_words=10, cuts=False, dev_fraction=0.2, test_fraction=0.2, seed=5)
    one = prepare_synth(SynthConfig(out_dir=str(tmp_path / "a"), num_jobs=1, **common))
    two = prepare_synth(SynthConfig(out_dir=str(tmp_path / "b"), num_jobs=2, **common))
    a, b = _corpus(tmp_path / "a"), _corpus(tmp_path / "b")
    assert a == b
    total = sum(x["duration"] for s in SPLITS for x in a[s])
    assert 0.02 * 3600 <= total < 0.02 * 3600 + 30  # stops at the first utterance past the target
    groups = {s: {x["voice_group"] for x in a[s]} for s in SPLITS}
    texts = {s: {x["text"] for x in a[s]} for s in SPLITS}
    assert not groups["test"] & groups["train"] and not texts["test"] & texts["train"]
    for s in SPLITS:
        for x in a[s]:
            wav = tmp_path / "a" / x["audio_filepath"]
            assert wav.is_file() and x["audio_filepath"].startswith(f"audio/{s}/")
            assert x["text"] == transcript_of(x["source_text"], "en") and x["text"]
    from speechkit.audio.io import audio_info

    info = audio_info(tmp_path / "a" / a["train"][0]["audio_filepath"])
    assert info.sample_rate == 16000 and info.num_channels == 1
    assert abs(info.duration - a["train"][0]["duration"]) < 1e-3
    assert str(one).splitlines()[0].split()[:3] == ["split", "utts", "hours"]
    assert one.splits["train"].utterances == len(a["train"]) and two.reused == 0


def test_resume_reuses_finished_audio_and_refuses_other_settings(tmp_path):
    cfg = SynthConfig(out_dir=str(tmp_path / "c"), hours=0.01, max_words=8, cuts=False, num_jobs=1)
    first = prepare_synth(cfg)
    before = _corpus(tmp_path / "c")
    n = sum(len(v) for v in before.values())
    victim = tmp_path / "c" / before["train"][0]["audio_filepath"]
    victim.unlink()  # as if the run had been interrupted before this utterance
    (tmp_path / "c" / "train.json").unlink()
    again = prepare_synth(cfg)
    assert again.reused == n - 1 and _corpus(tmp_path / "c") == before and victim.is_file()
    assert first.reused == 0
    with pytest.raises(ValueError, match=r"other settings \(seed: 0 -> 9\).*--overwrite"):
        prepare_synth(SynthConfig(out_dir=cfg.out_dir, hours=0.01, max_words=8, cuts=False, seed=9))
    prepare_synth(SynthConfig(out_dir=cfg.out_dir, hours=0.01, max_words=8, cuts=False, seed=9, overwrite=True))
    assert _corpus(tmp_path / "c") != before
    # A corpus built before a setting existed is still ours when that setting keeps its default.
    settings = tmp_path / "c" / "settings.json"
    settings.write_text(json.dumps({k: v for k, v in json.loads(settings.read_text()).items() if k != "exclude"}))
    assert prepare_synth(SynthConfig(out_dir=cfg.out_dir, hours=0.01, max_words=8, cuts=False, seed=9)).reused > 0


def test_noise_reverb_and_cuts(tmp_path):
    pytest.importorskip("pyroomacoustics")
    cfg = SynthConfig(out_dir=str(tmp_path / "n"), max_utterances=4, hours=1.0, max_words=6, noise_prob=1.0,
                      reverb_prob=1.0, snr_range=[10.0, 10.0], num_jobs=1)
    summary = prepare_synth(cfg)
    lines = [x for s in SPLITS for x in _lines(tmp_path / "n" / f"{s}.json")]
    assert len(lines) == 4 == sum(s.utterances for s in summary.splits.values())
    assert all(x["noise"] in ("white", "pink", "brown") and x["snr_db"] == 10.0 and x["reverb"] for x in lines)
    from speechkit.data.manifests import load_cutset

    cuts = [c for s in SPLITS for c in load_cutset(tmp_path / "n" / f"{s}.cuts.jsonl.gz")]
    assert sorted(round(c.duration, 3) for c in cuts) == sorted(x["duration"] for x in lines)
    assert cuts[0].load_audio().shape[0] == 1


def test_bad_options_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--rate-range"):
        prepare_synth(SynthConfig(out_dir=str(tmp_path / "x"), rate_range=[1.5, 1.0]))
    with pytest.raises(ValueError, match="--engines: unknown engine"):
        prepare_synth(SynthConfig(out_dir=str(tmp_path / "x"), engines=["sam"]))
    with pytest.raises(ValueError, match="text file not found"):
        prepare_synth(SynthConfig(out_dir=str(tmp_path / "y"), texts=[str(tmp_path / "none.txt")]))
    with pytest.raises(ValueError, match="no voice for language 'xx'"):
        prepare_synth(SynthConfig(out_dir=str(tmp_path / "z"), langs=["xx"]))


def test_text_file_source_and_cli_summary(tmp_path, capsys):
    text = tmp_path / "mine.txt"
    text.write_text("\n".join(f"this is sentence number {w} of my own" for w in
                              ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]) +
                    "\nthis line has 3 digits\n")
    out = tmp_path / "t"
    assert cli.main(["prepare", "synth", "--out-dir", str(out), "--texts", str(text), "--max-utterances", "6",
                     "--num-jobs", "1", "--no-cuts"]) == 0
    printed = capsys.readouterr().out
    assert "split" in printed and "total 6 utterances" in printed and "1 digits" in printed
    texts = [x["text"] for s in SPLITS for x in _lines(out / f"{s}.json")]
    assert len(texts) == 6 and all(t.startswith("this is sentence number") for t in texts)


@pytest.mark.slow
def test_one_hour_english_corpus(tmp_path):
    summary = prepare_synth(SynthConfig(out_dir=str(tmp_path / "h"), hours=1.0, cuts=False))
    hours = sum(s.seconds for s in summary.splits.values()) / 3600
    speakers = set().union(*(s.speakers for s in summary.splits.values()))
    engines = set().union(*(s.engines for s in summary.splits.values()))
    assert hours >= 1.0 and len(speakers) >= 8 and len(engines) >= 2
    assert all(summary.splits[s].utterances > 0 for s in SPLITS)


@pytest.mark.skipif(not available_sources("it"),
                    reason="needs Italian text: fortunes-it or witalian (make setup-multilang)")
def test_multi_language_corpus(tmp_path):
    out = tmp_path / "ml"
    summary = prepare_synth(SynthConfig(out_dir=str(out), langs=["en", "it"], max_utterances=8, hours=1.0,
                                        max_words=8, cuts=False, num_jobs=1, engines=["espeak-ng"]))
    lines = [x for s in SPLITS for x in _lines(out / f"{s}.json")]
    assert sorted(x["lang"] for x in lines) == ["en"] * 4 + ["it"] * 4
    for x in lines:
        if x["lang"] == "it":
            assert x["text"] == transcript_of(x["source_text"], "it") and x["voice"] == "espeak-ng:it"
            assert x["text"] == x["text"].casefold() and not any(c in x["text"] for c in ",.;:!?\"")
    # Italian has one espeak-ng accent: it can only be held out by variant, and the summary says so.
    assert any("'it'" in w and "variant" in w for w in summary.warnings)
    assert "warning: language 'it'" in str(summary)


@pytest.mark.skipif(shutil.which("diatheke") is None, reason="needs diatheke + sword-text-kjv (make setup-multilang)")
def test_bible_text_source():
    from speechkit.data.texts import sentence_pool

    pool = sentence_pool("en", ["bible"], seed=0)
    assert len(pool.sentences) > 10000 and pool.sources["bible"] == len(pool.sentences)
    assert not any(":" in s.split()[0] or "LORD" in s for s in pool.sentences[:500])


@pytest.mark.skipif(not Path("/usr/share/mbrola/de1").exists() or not Path("/usr/share/mbrola/us1").exists(),
                    reason="needs the mbrola-de1 and mbrola-us1 voices (make setup-extra-voices)")
def test_accented_mbrola_voices_are_opt_in_and_share_their_speaker_group(tmp_path):
    native = find_voices("en", ["mbrola"])
    accented = find_voices("en", ["mbrola-accented"])
    assert "mb-us1" in {v.name for v in native} and not any(v.name.count("-") > 1 for v in native)
    de1 = next(v for v in accented if v.name == "mb-de1-en")
    # One speaker (the de1 database) whichever language it reads: one voice group.
    assert de1.engine == "mbrola" and de1.group == next(v for v in find_voices("de", ["mbrola"]) if v.name == "mb-de1").group
    assert not {v.group for v in native} & {v.group for v in accented}
    cfg = SynthConfig(out_dir=str(tmp_path / "m"), engines=["mbrola-accented"], max_utterances=3, hours=1.0,
                      max_words=6, dev_fraction=0.0, test_fraction=0.0, cuts=False, num_jobs=1)
    prepare_synth(cfg)
    lines = _lines(tmp_path / "m" / "train.json")
    assert len(lines) == 3 and all(x["voice"].endswith("-en") and x["engine"] == "mbrola" for x in lines)
    with pytest.raises(ValueError, match="unknown engine.*mbrola-accented"):
        SynthConfig(engines=["mbrola-accent"]).validate()
