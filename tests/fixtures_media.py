"""Tiny real image and text subjects for explainer tests: a small CNN (state_dict + architecture file)
over generated 16x16 images with ground-truth masks, and a 2-layer BERT classifier with its own
vocabulary saved as a local transformers folder. Built once per session, in a second or two."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ARCHITECTURE = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyCNN(nn.Module):
        def __init__(self, flatten_module: bool = False):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten() if flatten_module else None
            self.classifier = nn.Linear(8, 2)

        def forward(self, x):
            x = self.pool(self.features(x))
            x = self.flatten(x) if self.flatten is not None else torch.flatten(x, 1)
            return self.classifier(x)
''')
WORDS = ["pain", "chest", "severe", "mild", "refill", "rash", "check", "the", "a", "patient", "reports", "since",
         "today", "weeks", "routine", "urgent", "bleeding", "cough"]


def _images(folder: Path, n: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for i in range(n):
        img = (0.55 + 0.1 * rng.random((16, 16, 3))) * 255
        mask = np.zeros((16, 16), dtype=np.uint8)
        label = "spot" if i % 2 else "clear"
        if label == "spot":
            r, c = rng.integers(3, 10, size=2)
            img[r:r + 4, c:c + 4] = (60, 30, 20)
            mask[r:r + 4, c:c + 4] = 255
        Image.fromarray(img.astype(np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i}.png")
        rows.append({"image_id": f"I{i:02d}", "file": f"images/{i}.png", "mask": f"masks/{i}.png", "label": label})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)


def _train_cnn(folder: Path, flatten_module: bool = False):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("tiny_cnn", folder / "tiny_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.TinyCNN(flatten_module=flatten_module)
    frame = pd.read_csv(folder / "data" / "labels.csv")
    from PIL import Image

    X = torch.tensor(np.stack([np.asarray(Image.open(folder / "data" / f)) for f in frame["file"]]).transpose(0, 3, 1, 2)
                     / 255.0, dtype=torch.float32)
    y = torch.tensor([1 if v == "spot" else 0 for v in frame["label"]])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(X).argmax(1) == y).float().mean().item()
    assert accuracy == 1.0, f"tiny CNN failed to learn its spots (accuracy {accuracy})"
    return model


def image_policy(folder: Path, explanations: list[dict], *, model_file: str = "cnn.pt", flatten_module: bool = False) -> Path:
    policy = {
        "version": 1,
        "audit": {"id": "tiny-images", "title": "Tiny images", "audience": "medical", "owner": "tests",
                  "intended_use": "tests"},
        "models": [{"id": "cnn", "path": model_file, "format": "state_dict", "classes": ["clear", "spot"],
                    "positive_class": "spot",
                    "architecture": {"file": "tiny_cnn.py", "class": "TinyCNN", "kwargs": {"flatten_module": flatten_module}}}],
        "datasets": [{"id": "images", "kind": "image", "path": "data/labels.csv", "mask_column": "mask",
                      "id_column": "image_id", "target": "label"}],
        "audited": [{"model": "cnn", "dataset": "images"}],
        "sample": {"size": 4, "strategy": "stratified", "seed": 1},
        "explanations": explanations,
        "report": {"formats": ["html"]},
    }
    path = folder / f"policy-{abs(hash(str(explanations) + model_file)) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    import torch

    folder = tmp_path_factory.mktemp("tiny_images")
    _images(folder / "data", 24, seed=0)
    (folder / "tiny_cnn.py").write_text(ARCHITECTURE)
    torch.save(_train_cnn(folder).state_dict(), folder / "cnn.pt")
    torch.save(_train_cnn(folder, flatten_module=True).state_dict(), folder / "cnn_flatten.pt")
    return folder


@pytest.fixture(scope="session")
def tiny_image(image_folder):
    from auditor.audit import prepare
    from auditor.policy import load_policy

    policy = load_policy(image_policy(image_folder, [{"type": "gradcam", "layer": "features.2"}]))
    return prepare(policy)[0]


@pytest.fixture(scope="session")
def text_folder(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_text")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2,
                        id2label={0: "routine", 1: "urgent"}, label2id={"routine": 0, "urgent": 1})
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(20):
        urgent = i % 2 == 1
        words = list(rng.choice(WORDS[7:14], size=5))
        phrase = "severe chest pain" if urgent else "mild rash"
        text = " ".join(words[:2]) + " " + phrase + " " + " ".join(words[2:])
        start = text.index(phrase)
        rows.append({"note_id": f"T{i:02d}", "text": text, "label": "urgent" if urgent else "routine",
                     "start": start, "end": start + len(phrase)})
    pd.DataFrame(rows).to_csv(folder / "notes.csv", index=False)
    return folder


def text_policy(folder: Path, explanations: list[dict]) -> Path:
    policy = {
        "version": 1,
        "audit": {"id": "tiny-text", "title": "Tiny text", "audience": "medical", "owner": "tests", "intended_use": "tests"},
        "models": [{"id": "bert", "path": "model", "format": "huggingface", "max_length": 24, "positive_class": "urgent"}],
        "datasets": [{"id": "notes", "kind": "text", "path": "notes.csv", "id_column": "note_id", "target": "label",
                      "rationale_columns": ["start", "end"]}],
        "audited": [{"model": "bert", "dataset": "notes"}],
        "sample": {"size": 3, "strategy": "stratified", "seed": 1},
        "explanations": explanations,
        "report": {"formats": ["html"]},
    }
    path = folder / f"policy-{abs(hash(str(explanations))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_text(text_folder):
    from auditor.audit import prepare
    from auditor.policy import load_policy

    policy = load_policy(text_policy(text_folder, [{"type": "attention"}]))
    return prepare(policy)[0]
