"""A tiny 3-language corpus spoken by espeak-ng (made once per test session, a few seconds) and a tiny LID model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SENTENCES = {
    "en": ["the weather is nice today", "where is the train station", "i would like a cup of tea",
           "she reads a book every evening", "we walked along the river", "my brother plays the guitar",
           "the children are in the garden", "please close the window"],
    "de": ["das wetter ist heute schön", "wo ist der bahnhof", "ich möchte eine tasse tee",
           "sie liest jeden abend ein buch", "wir gingen am fluss entlang", "mein bruder spielt gitarre",
           "die kinder sind im garten", "bitte schließ das fenster"],
    "es": ["hoy hace buen tiempo", "dónde está la estación de tren", "quisiera una taza de té",
           "ella lee un libro cada noche", "caminamos por el río", "mi hermano toca la guitarra",
           "los niños están en el jardín", "por favor cierra la ventana"],
}


def speak(lang: str, text: str, out: Path, variant: str = "") -> None:
    voice = lang + (f"+{variant}" if variant else "")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def lid_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train.json`` (6 utterances per language, variants m1/f2) and ``test.json`` (2 per language, variant m3),
    16 kHz wavs; lines carry ``lang`` and ``engine``."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from speechkit.audio.io import load_audio, save_audio

    root = tmp_path_factory.mktemp("lid_corpus")
    lines: dict[str, list[dict]] = {"train": [], "test": []}
    for lang, sentences in SENTENCES.items():
        for i, text in enumerate(sentences):
            split = "train" if i < 6 else "test"
            variant = "m3" if split == "test" else ("m1" if i % 2 else "f2")
            raw = root / f"raw_{lang}_{i}.wav"
            speak(lang, text, raw, variant)
            samples = load_audio(raw, 16000)
            wav = save_audio(root / f"{lang}_{i}.wav", samples, 16000)
            raw.unlink()
            lines[split].append({"audio_filepath": str(wav), "duration": round(samples.shape[0] / 16000, 3),
                                 "text": text, "lang": lang, "engine": "espeak-ng", "voice": f"espeak-ng:{lang}"})
    for split, items in lines.items():
        (root / f"{split}.json").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items))
    return root
