"""The speech synthesisers Debian ships, as voices the corpus builder can ask for.

Engines and what they give (resources.md measured their speed and intelligibility):

| engine    | voices found by                       | varied by                                   | audio may be shipped |
| --------- | ------------------------------------- | ------------------------------------------- | -------------------- |
| espeak-ng | ``espeak-ng --voices=<lang>``          | variant (``+m3``, ``+f2``, klatt...), rate, pitch | yes (GPL engine)  |
| flite     | ``flite -lv`` (English only)           | duration stretch, mean F0                    | yes                  |
| festival  | ``(voice.list)`` of the installed festvox packages | duration stretch, mean F0 (diphone voices) | yes          |
| pico      | ``pico2wave`` when installed (contrib) | -                                            | no                   |
| mbrola    | ``espeak-ng -v mb-xx`` with the voice under /usr/share/mbrola | rate, pitch          | no (licence)         |
| mbrola-accented | ``espeak-ng -v mb-xx-<lang>``: another language's mbrola speaker reading this one | rate, pitch | no (licence) |

A :class:`Voice` is one engine's base voice; the corpus builder splits train/dev/test by ``Voice.group`` (the
underlying recorded speaker: flite's ``slt`` and festival's ``cmu_us_slt_arctic_hts`` are the same woman), so no
test speaker is ever heard in training, not even through another engine or variant. Festival starts slowly
(~0.2 s), so :func:`synthesize_batch` reads a whole batch of sentences in one festival process.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# espeak-ng variants that sound like distinct speakers (the whisper/croak/robot ones are left out).
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
    "klatt4", "adam", "Alex", "Andy", "annie", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
    "edward", "Gene", "gustave", "Henrique", "Hugo", "iven", "Jacky", "john", "Lee", "linda", "marcelo", "Marco",
    "max", "Michael", "michel", "miguel", "Mike", "norbert", "paul", "pedro", "quincy", "rob", "robert", "sandro",
    "shelby", "steph", "travis", "victor", "zac", "grandma", "grandpa",
)
# festival voice -> (language, recorded speaker)
FESTIVAL_VOICES: dict[str, tuple[str, str]] = {
    "kal_diphone": ("en", "kal"), "ked_diphone": ("en", "ked"), "cmu_us_slt_arctic_hts": ("en", "slt"),
    "lp_diphone": ("it", "lp"), "suo_fi_lj_diphone": ("fi", "lj"), "czech_dita": ("cs", "dita"),
    "upc_ca_ona_hts": ("ca", "ona"), "msu_ru_nsh_clunits": ("ru", "nsh"), "hindi_nsk_diphone": ("hi", "nsk"),
}
# flite voice -> recorded speaker (awb_time only speaks clock times and is left out)
FLITE_VOICES: dict[str, str] = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}
# Voices whose F0 target can be moved (diphone and some flite voices; HTS/clunits voices ignore it).
_F0_VOICES = {"flite:kal", "flite:kal16", "flite:slt", "festival:kal_diphone", "festival:ked_diphone",
              "festival:lp_diphone", "festival:suo_fi_lj_diphone", "festival:hindi_nsk_diphone"}
PICO_LANGS = {"en": "en-US", "de": "de-DE", "es": "es-ES", "fr": "fr-FR", "it": "it-IT"}
SHIPPABLE_ENGINES = ("espeak-ng", "flite", "festival")


class SynthesisError(RuntimeError):
    """An engine failed on an input; the message names the engine, voice and text."""


@dataclass(frozen=True)
class Voice:
    """One base voice of one engine.

    Attributes:
        engine: ``espeak-ng``, ``flite``, ``festival``, ``pico`` or ``mbrola``.
        name: the engine's voice name (``en-us``, ``slt``, ``kal_diphone``, ``mb-us1``).
        lang: language code the voice speaks.
        speaker: the recorded (or rule-based) speaker behind it; voices sharing it share a split.
        variants: espeak-ng variants this voice may be rendered with (``""`` = none).
    """

    engine: str
    name: str
    lang: str
    speaker: str
    variants: tuple[str, ...] = ("",)

    @property
    def id(self) -> str:
        """``engine:name``, the unit a corpus is split by (with its speaker group)."""
        return f"{self.engine}:{self.name}"

    @property
    def group(self) -> str:
        """The split unit: voices of one recorded speaker form one group across engines."""
        return self.speaker

    @property
    def shippable(self) -> bool:
        """Whether audio made with this voice may be redistributed (mbrola and pico may not)."""
        return self.engine in SHIPPABLE_ENGINES

    @property
    def pitch_control(self) -> bool:
        return self.engine in ("espeak-ng", "mbrola") or self.id in _F0_VOICES


@dataclass(frozen=True)
class SynthJob:
    """One utterance to synthesise.

    Attributes:
        voice: the base voice.
        text: what to say.
        out_path: where the engine writes its wav (at the engine's own rate).
        variant: espeak-ng variant (``""`` = none).
        rate: speaking-rate factor (1.0 = the voice's default; 1.2 = 20 % faster).
        pitch: pitch factor (1.0 = default); ignored by voices without pitch control.
    """

    voice: Voice
    text: str
    out_path: str
    variant: str = ""
    rate: float = 1.0
    pitch: float = 1.0


@functools.cache
def _festival_installed() -> tuple[str, ...]:
    if not shutil.which("festival"):
        return ()
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as f:
        f.write("(print (voice.list))\n")
    try:
        out = subprocess.run(["festival", "-b", f.name], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(f.name)
    return tuple(out.stdout.replace("(", " ").replace(")", " ").split())


@functools.cache
def _espeak_voices(lang: str) -> tuple[str, ...]:
    if not shutil.which("espeak-ng"):
        return ()
    out = subprocess.run(["espeak-ng", f"--voices={lang}"], capture_output=True, text=True, timeout=60).stdout
    names = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        # columns: Pty Language Age/Gender VoiceName File [Other languages]
        if len(cols) >= 5 and not cols[4].startswith("mb/") and (cols[1] == lang or cols[1].startswith(lang + "-")):
            names.append(cols[1])
    return tuple(dict.fromkeys(names))


def _mbrola_database(voice: str) -> str:
    """The mbrola database (the recorded speaker) behind an espeak-ng mbrola voice: ``mb-de1-en`` -> ``de1``."""
    return voice.removeprefix("mb-").split("-")[0]


@functools.cache
def _mbrola_voices(lang: str, accented: bool = False) -> tuple[str, ...]:
    """Installed mbrola voices of a language: native ones (``mb-us1``), or with ``accented`` the voices of other
    languages' speakers reading it through espeak-ng's mapping (``mb-de1-en``: English with a German voice)."""
    if not shutil.which("espeak-ng") or not Path("/usr/share/mbrola").is_dir():
        return ()
    out = subprocess.run(["espeak-ng", "--voices=mb"], capture_output=True, text=True, timeout=60).stdout
    names = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("mb/") and (cols[1] == lang or cols[1].startswith(lang + "-")):
            voice = cols[4].split("/", 1)[1]  # mb-us1, or mb-de1-en for an accented one
            if (Path("/usr/share/mbrola") / _mbrola_database(voice)).exists() and ("-" in voice[3:]) == accented:
                names.append(voice)
    return tuple(names)


def find_voices(lang: str, engines: Sequence[str] = ()) -> list[Voice]:
    """Every installed voice for a language.

    Args:
        lang: language code (``en``, ``de``, ...).
        engines: restrict to these engines (empty = every engine); ``mbrola-accented`` (never implied) adds the
            mbrola voices of other languages' speakers that espeak-ng maps this language onto (``mb-de1-en``).

    Returns:
        Voices in a stable order (engine, then name).
    """
    want = set(engines) if engines else {"espeak-ng", "flite", "festival", "pico", "mbrola"}
    voices: list[Voice] = []
    if "espeak-ng" in want:
        # Each espeak-ng accent is its own rule set; the variants are formant settings on top of it.
        voices += [Voice("espeak-ng", v, lang, f"espeak-ng:{v}", ("",) + ESPEAK_VARIANTS) for v in _espeak_voices(lang)]
    if "flite" in want and lang == "en" and shutil.which("flite"):
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=60).stdout
        have = set(out.replace("Voices available:", "").split())
        voices += [Voice("flite", v, "en", spk) for v, spk in FLITE_VOICES.items() if v in have]
    if "festival" in want:
        have = {v.lower() for v in _festival_installed()}
        voices += [Voice("festival", v, lg, spk) for v, (lg, spk) in FESTIVAL_VOICES.items() if lg == lang and v in have]
    if "pico" in want and lang in PICO_LANGS and shutil.which("pico2wave"):
        voices.append(Voice("pico", PICO_LANGS[lang], lang, f"pico:{PICO_LANGS[lang]}"))
    if "mbrola" in want:
        voices += [Voice("mbrola", v, lang, f"mbrola:{v}") for v in _mbrola_voices(lang)]
    if "mbrola-accented" in want:
        # The speaker is the database: mb-de1-en is the German voice mb-de1, one group with it.
        voices += [Voice("mbrola", v, lang, f"mbrola:mb-{_mbrola_database(v)}") for v in _mbrola_voices(lang, True)]
    return voices


def _run(cmd: list[str], job: SynthJob, stdin: str | None = None) -> None:
    try:
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as err:
        raise SynthesisError(f"{job.voice.id}: timed out on {job.text!r}") from err
    if res.returncode != 0 or not Path(job.out_path).is_file() or Path(job.out_path).stat().st_size <= 44:
        raise SynthesisError(f"{job.voice.id}: failed on {job.text!r}: {res.stderr.strip()[:200]}")


def _espeak(job: SynthJob) -> None:
    voice = job.voice.name + (f"+{job.variant}" if job.variant else "")
    # espeak-ng's default rate is 175 words per minute and its pitch 50 (0-99).
    rate = str(int(round(175 * job.rate)))
    pitch = str(int(min(99, max(0, round(50 * job.pitch)))))
    _run(["espeak-ng", "-v", voice, "-s", rate, "-p", pitch, "-w", job.out_path, "--stdin"], job, stdin=job.text)


def _flite(job: SynthJob) -> None:
    cmd = ["flite", "-voice", job.voice.name, "--setf", f"duration_stretch={1.0 / job.rate:.3f}"]
    if job.voice.pitch_control:
        base = 170.0 if job.voice.name == "slt" else 105.0
        cmd += ["--setf", f"int_f0_target_mean={base * job.pitch:.1f}"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(job.text)
    try:
        _run(cmd + ["-f", f.name, "-o", job.out_path], job)
    finally:
        os.unlink(f.name)


def _pico(job: SynthJob) -> None:
    _run(["pico2wave", "-l", job.voice.name, "-w", job.out_path, job.text], job)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_batch(jobs: Sequence[SynthJob]) -> list[str | None]:
    """Synthesise jobs of one festival voice in one process; returns an error message (or None) per job."""
    voice = jobs[0].voice
    lines = [f"(voice_{voice.name})"]
    for i, job in enumerate(jobs):
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / job.rate:.3f})")
        if voice.pitch_control:
            # Diphone voices read intonation targets from int_lr_params; moving the mean moves the voice.
            lines.append(f"(set! int_lr_params '((target_f0_mean {110 * job.pitch:.1f}) (target_f0_std 20) "
                         f"(model_f0_mean 170) (model_f0_std 34)))")
        lines.append(f"(set! u{i} (Utterance Text {_scheme_string(job.text)}))")
        lines.append(f"(utt.synth u{i})")
        lines.append(f"(utt.save.wave u{i} {_scheme_string(job.out_path)} 'riff)")
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    try:
        res = subprocess.run(["festival", "-b", f.name], capture_output=True, text=True, timeout=60 + 20 * len(jobs))
        stderr = res.stderr.strip()[:200]
    except subprocess.TimeoutExpired:
        stderr = "timed out"
    finally:
        os.unlink(f.name)
    errors: list[str | None] = []
    for job in jobs:
        ok = Path(job.out_path).is_file() and Path(job.out_path).stat().st_size > 44
        errors.append(None if ok else f"{voice.id}: failed on {job.text!r}: {stderr}")
    return errors


def synthesize_batch(jobs: Sequence[SynthJob]) -> list[str | None]:
    """Run a batch of jobs (festival jobs of one voice share a process).

    Args:
        jobs: the utterances; their ``out_path`` folders must exist.

    Returns:
        One entry per job: None on success, else the error message (the caller counts and reports them).
    """
    errors: list[str | None] = [None] * len(jobs)
    festival: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.voice.engine == "festival":
            festival.setdefault(job.voice.name, []).append(i)
            continue
        try:
            {"espeak-ng": _espeak, "mbrola": _espeak, "flite": _flite, "pico": _pico}[job.voice.engine](job)
        except SynthesisError as err:
            errors[i] = str(err)
    for idx in festival.values():
        for i, err in zip(idx, _festival_batch([jobs[i] for i in idx]), strict=False):
            errors[i] = err
    return errors
