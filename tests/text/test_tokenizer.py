"""SentencePiece tokenizers: training on manifests, round trips, storage, errors and the CLI commands."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from speechkit import __version__
from speechkit.cli import main
from speechkit.data.manifests import ManifestError
from speechkit.text.normalize import ENGLISH_ALPHABET, normalize_english
from speechkit.text.tokenizer import (
    Tokenizer,
    TokenizerError,
    TokenizerNotFoundError,
    TokenizerTrainConfig,
    UnknownCharactersError,
    train_tokenizer_from_manifests,
)

# After normalisation these use 23 letters: no j, q, x or z. As written they hold no Q, Z, X, J, 4, 6, 7, 8, "-".
TEXTS = [
    "Hello world, this is a test.",
    "The cat sat on the mat.",
    "Speech recognition is fun; isn't it?",
    "Dr. Smith paid $5.50 at 10:30.",
    "I have 3 cats and 2 dogs.",
    "We will meet on the 3rd of May, 1999.",
    "Good morning! How are you today?",
    "Birds fly over the green hills.",
    "Open the window and let the light in.",
    "Every child knows the alphabet song.",
    "A small boat drifts down the river.",
    "They played cards until it was dark.",
]


def write_manifest(path: Path, texts: list[str]) -> Path:
    """A NeMo manifest whose audio files need not exist (read_manifest does not check them by default)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"audio_filepath": f"audio/{i}.wav", "duration": 1.0 + i / 10, "text": text}) + "\n")
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "train.json", TEXTS)


@pytest.fixture
def bpe_dir(tmp_path: Path, manifest: Path) -> Path:
    out = tmp_path / "tok_bpe"
    train_tokenizer_from_manifests([manifest], out, TokenizerTrainConfig(vocab_size=40, model_type="bpe"))
    return out


@pytest.fixture
def raw_dir(tmp_path: Path, manifest: Path) -> Path:
    """A tokenizer trained without normalisation: it cannot represent characters its text lacks."""
    out = tmp_path / "tok_raw"
    train_tokenizer_from_manifests([manifest], out, TokenizerTrainConfig(vocab_size=60, normalize=False))
    return out


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_english_tokenizer_has_every_letter_even_if_training_lacked_it(tmp_path, manifest, model_type):
    assert not set("".join(normalize_english(t) for t in TEXTS)) & set("jqxz")
    cfg = TokenizerTrainConfig(vocab_size=40, model_type=model_type)
    tok = train_tokenizer_from_manifests([manifest], tmp_path / "t", cfg)
    for letter in ENGLISH_ALPHABET:
        assert tok.piece_to_id(letter) != tok.unk_id
    assert tok.unknown_characters("Jazz quixotic, 4-6-8!") == []
    assert tok.decode(tok.encode("Jazz quixotic, 4-6-8!")) == "jazz quixotic four six eight"


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_writes_files_and_round_trips(tmp_path, manifest, model_type):
    out = tmp_path / "tok"
    tok = train_tokenizer_from_manifests([manifest], out, TokenizerTrainConfig(vocab_size=40, model_type=model_type))
    assert tok.vocab_size == 40 and tok.model_type == model_type and tok.normalizer == "english"
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer.model", "tokenizer.vocab"]
    meta = json.loads((out / "tokenizer.json").read_text())
    assert meta["model_type"] == model_type and meta["vocab_size"] == 40 and meta["normalizer"] == "english"
    assert meta["speechkit_version"] == __version__
    assert meta["sentences"] == len(TEXTS) and meta["empty_after_normalizing"] == 0 and meta["skipped_lines"] == 0
    vocab = (out / "tokenizer.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 40 and vocab[0].split("\t")[0] == "<unk>"
    assert [line.split("\t")[0] for line in vocab] == [tok.id_to_piece(i) for i in range(40)]
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids and all(0 <= i < tok.vocab_size for i in ids) and tok.unk_id not in ids
        assert tok.decode(ids) == normalize_english(text)
        # The notebook normalises first; a second normalisation must change nothing.
        assert tok.encode(normalize_english(text)) == ids
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_ids_cover_the_whole_range_and_pieces_invert(bpe_dir):
    tok = Tokenizer.load(bpe_dir)
    assert tok.unk_id == 0 and tok.id_to_piece(0) == "<unk>"
    pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    assert len(set(pieces)) == tok.vocab_size
    assert [tok.piece_to_id(p) for p in pieces] == list(range(tok.vocab_size))
    with pytest.raises(TokenizerError, match="'nope' is not a piece"):
        tok.piece_to_id("nope")
    with pytest.raises(TokenizerError, match=r"id 40 is out of range \[0, 40\) \(the transducer blank"):
        tok.decode([1, 40])
    with pytest.raises(TokenizerError, match="out of range"):
        tok.id_to_piece(-1)


def test_encode_batch_equals_encode(bpe_dir):
    tok = Tokenizer.load(bpe_dir)
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]
    assert tok.encode_batch([]) == []


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_training_is_deterministic(tmp_path, manifest, model_type):
    cfg = TokenizerTrainConfig(vocab_size=36, model_type=model_type, seed=3)
    a = train_tokenizer_from_manifests([manifest], tmp_path / "a", cfg)
    b = train_tokenizer_from_manifests([manifest], tmp_path / "b", cfg)
    assert (tmp_path / "a" / "tokenizer.model").read_bytes() == (tmp_path / "b" / "tokenizer.model").read_bytes()
    assert a.to_bytes() == b.to_bytes()


def test_max_sentences_samples_reproducibly(tmp_path, manifest):
    cfg = TokenizerTrainConfig(vocab_size=30, max_sentences=6, seed=1)
    a = train_tokenizer_from_manifests([manifest], tmp_path / "a", cfg)
    b = train_tokenizer_from_manifests([manifest], tmp_path / "b", cfg)
    assert a.metadata["sentences"] == 6
    assert a.to_bytes() == b.to_bytes()


def test_training_prints_nothing(tmp_path, manifest, capfd):
    train_tokenizer_from_manifests([manifest], tmp_path / "t", TokenizerTrainConfig(vocab_size=40))
    with pytest.raises(TokenizerError):
        train_tokenizer_from_manifests([manifest], tmp_path / "u", TokenizerTrainConfig(vocab_size=5000))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_load_from_folder_file_and_bare_model(tmp_path, bpe_dir):
    from_dir = Tokenizer.load(bpe_dir)
    from_file = Tokenizer.load(bpe_dir / "tokenizer.model")
    assert from_dir.normalizer == from_file.normalizer == "english"
    assert from_dir.encode(TEXTS[3]) == from_file.encode(TEXTS[3])
    # A SentencePiece model without tokenizer.json normalises nothing unless told to.
    bare = tmp_path / "bare" / "my.model"
    bare.parent.mkdir()
    shutil.copy(bpe_dir / "tokenizer.model", bare)
    assert Tokenizer.load(bare).normalizer == "none"
    assert Tokenizer.load(bare, normalizer="english").encode(TEXTS[3]) == from_dir.encode(TEXTS[3])


def test_load_errors_name_the_path(tmp_path, bpe_dir):
    missing = tmp_path / "nowhere"
    with pytest.raises(TokenizerNotFoundError, match=f"tokenizer model not found: {missing}"):
        Tokenizer.load(missing)
    assert issubclass(TokenizerNotFoundError, ValueError) and issubclass(TokenizerNotFoundError, FileNotFoundError)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerNotFoundError, match=f"{empty} holds no tokenizer.model"):
        Tokenizer.load(empty)
    (bpe_dir / "tokenizer.json").write_text("{broken")
    with pytest.raises(TokenizerError, match="tokenizer.json: not valid JSON"):
        Tokenizer.load(bpe_dir)
    (bpe_dir / "tokenizer.json").write_text(json.dumps({"normalizer": "english", "vocab_size": 99}))
    with pytest.raises(TokenizerError, match="says vocab_size 99 but .* has 40 pieces"):
        Tokenizer.load(bpe_dir)
    (bpe_dir / "tokenizer.json").write_text(json.dumps({"normalizer": "klingon"}))
    with pytest.raises(TokenizerError, match="unknown normalizer 'klingon'"):
        Tokenizer.load(bpe_dir)
    (bpe_dir / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="tokenizer.model: not a SentencePiece model"):
        Tokenizer.load(bpe_dir, normalizer="none")


def test_bytes_and_pickle_round_trip(tmp_path, bpe_dir):
    tok = Tokenizer.load(bpe_dir)
    again = Tokenizer.from_bytes(tok.to_bytes(), "english")
    assert again.to_bytes() == (bpe_dir / "tokenizer.model").read_bytes()
    assert again.encode_batch(TEXTS) == tok.encode_batch(TEXTS)
    unpickled = pickle.loads(pickle.dumps(tok))
    assert unpickled.normalizer == "english" and unpickled.encode_batch(TEXTS) == tok.encode_batch(TEXTS)
    # save() of a tokenizer made from bytes writes a folder that loads back the same.
    again.save(tmp_path / "saved")
    assert Tokenizer.load(tmp_path / "saved").encode(TEXTS[0]) == tok.encode(TEXTS[0])
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        Tokenizer.from_bytes(b"\x00junk", "english")
    with pytest.raises(TokenizerError, match="unknown text normalizer 'fancy'; known: english, none"):
        Tokenizer.from_bytes(tok.to_bytes(), "fancy")


def test_unknown_characters_are_named(raw_dir):
    tok = Tokenizer.load(raw_dir)
    assert tok.normalizer == "none"
    assert tok.unknown_characters("A QUIZ, maybe jazz-47?") == ["Q", "U", "Z", "j", "z", "-", "4", "7"]
    assert tok.unknown_characters(TEXTS[3]) == []
    with pytest.raises(UnknownCharactersError) as info:
        tok.encode("a  quiz")
    err = info.value
    assert err.characters == ["q", "z"] and err.text == "a quiz" and isinstance(err, ValueError)
    assert "'q' 'z'" in str(err) and "allow_unknown=True" in str(err)
    ids = tok.encode("a quiz", allow_unknown=True)
    assert tok.unk_id in ids and all(0 <= i < tok.vocab_size for i in ids)
    assert "\u2047" in tok.decode(ids)  # SentencePiece's <unk> surface
    with pytest.raises(UnknownCharactersError, match=r"text 1 of the batch has characters .*'x'"):
        tok.encode_batch(["hello", "six boxes"])
    assert tok.unk_id in tok.encode_batch(["hello", "six boxes"], allow_unknown=True)[1]


def test_unnormalised_tokenizer_keeps_case_and_punctuation(raw_dir):
    tok = Tokenizer.load(raw_dir)
    assert tok.decode(tok.encode("  Dr. Smith   paid $5.50! ")) == "Dr. Smith paid $5.50!"
    assert tok.unknown_characters("Wörld") == ["ö"]


def test_vocab_size_errors_name_the_manifest_and_the_flag(tmp_path, manifest):
    with pytest.raises(TokenizerError) as info:
        train_tokenizer_from_manifests([manifest], tmp_path / "t", TokenizerTrainConfig(vocab_size=5000))
    msg = str(info.value)
    assert "vocab_size 5000 is too large" in msg and str(manifest) in msg and "smaller --vocab-size" in msg
    assert "at most" in msg
    # 26 letters + apostrophe + word boundary + <unk>
    with pytest.raises(TokenizerError, match=r"too small .* need 29 pieces; use a larger --vocab-size"):
        train_tokenizer_from_manifests([manifest], tmp_path / "t", TokenizerTrainConfig(vocab_size=28))


def test_no_text_and_bad_lines_are_errors(tmp_path, manifest):
    silent = write_manifest(tmp_path / "silent.json", ["...", "?!", "---"])
    with pytest.raises(TokenizerError, match=r"no text to train a tokenizer on in .*silent.json: 3 entries, 3 of"):
        train_tokenizer_from_manifests([silent], tmp_path / "t")
    bad = tmp_path / "bad.json"
    bad.write_text(manifest.read_text() + "{not json\n")
    with pytest.raises(ManifestError, match=r"bad.json:13: not valid JSON"):
        train_tokenizer_from_manifests([bad], tmp_path / "t")
    with pytest.raises(TokenizerError, match="no manifests given"):
        train_tokenizer_from_manifests([], tmp_path / "t")


def test_empty_after_normalising_and_skipme_are_counted(tmp_path):
    m = write_manifest(tmp_path / "m.json", TEXTS + ["!!!"])
    with open(m, "a") as f:
        f.write(json.dumps({"audio_filepath": "x.wav", "duration": 1.0, "text": "skip me", "_skipme": 1}) + "\n")
    tok = train_tokenizer_from_manifests(m, tmp_path / "t", TokenizerTrainConfig(vocab_size=40))
    assert tok.metadata["sentences"] == len(TEXTS)
    assert tok.metadata["empty_after_normalizing"] == 1 and tok.metadata["skipped_lines"] == 1


@pytest.mark.parametrize(("field", "value", "message"), [
    ("model_type", "wordpiece", "model_type must be one of bpe, unigram, got 'wordpiece'"),
    ("vocab_size", 1, "vocab_size must be an integer >= 2"),
    ("character_coverage", 1.5, r"character_coverage must be in \(0, 1\]"),
    ("max_sentences", -1, "max_sentences must be >= 0"),
])
def test_config_errors_name_the_field(tmp_path, manifest, field, value, message):
    cfg = TokenizerTrainConfig(**{field: value})
    with pytest.raises(TokenizerError, match=message):
        train_tokenizer_from_manifests([manifest], tmp_path / "t", cfg)


def test_cli_train_and_encode(tmp_path, manifest, capsys):
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", str(manifest), "--out-dir", str(out), "--vocab-size", "40"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"tokenizer: bpe, 40 pieces -> {out}/tokenizer.model"
    assert printed[1] == f"trained on {len(TEXTS)} texts (english normaliser; 0 empty after normalising, 0 lines skipped)"
    assert printed[2] == "example: 'hello world this is a test'"
    pieces = printed[3].split(": ", 1)[1].split(" ")
    assert "".join(pieces).replace("\u2581", " ").strip() == "hello world this is a test"

    tok = Tokenizer.load(out)
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "Hello,", "World!"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ids = tok.encode("hello world")
    assert lines[0] == "text:   'hello world' (english normaliser)"
    assert lines[1] == "pieces: " + " ".join(tok.id_to_piece(i) for i in ids)
    assert lines[2] == "ids:    " + " ".join(map(str, ids))
    assert len(lines) == 3

    raw = tmp_path / "raw"
    assert main(["tokenizer", "train", str(manifest), "--out-dir", str(raw), "--vocab-size", "60",
                 "--no-normalize", "--model-type", "unigram"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"tokenizer: unigram, 60 pieces -> {raw}/tokenizer.model"
    assert printed[2] == "example: 'Hello world, this is a test.'"
    assert main(["tokenizer", "encode", "--tokenizer", str(raw), "a quiz"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "text:   'a quiz' (none normaliser)"
    assert lines[-1] == "characters the tokenizer cannot represent (encoded as <unk>, id 0): 'q' 'z'"
    assert "0" in lines[2].split()[1:]


def test_cli_errors_are_plain(tmp_path, manifest, capsys):
    assert main(["tokenizer", "train", str(manifest), "--out-dir", str(tmp_path / "t"), "--vocab-size", "900"]) == 2
    err = capsys.readouterr().err
    assert "TokenizerError" in err and "smaller --vocab-size" in err and str(manifest) in err
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "none"), "hi"]) == 2
    assert f"tokenizer model not found: {tmp_path / 'none'}" in capsys.readouterr().err
