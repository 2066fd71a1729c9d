"""auditor.sampling: seeded, reproducible choice of the decisions to explain."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.sampling import draw_sample

STRATEGIES = ["random", "stratified", "boundary", "misclassified"]
CLASSES = ["benign", "malignant"]


def population(n: int = 200, seed: int = 0, minority: float = 0.3):
    """Labels, probabilities (columns = CLASSES) and shuffled string ids for ``n`` decisions."""
    rng = np.random.default_rng(seed)
    y = np.array(["malignant" if u < minority else "benign" for u in rng.random(n)], dtype=object)
    p_pos = np.clip(np.where(y == "malignant", 0.75, 0.25) + rng.normal(0, 0.2, n), 0.001, 0.999)
    proba = np.column_stack([1 - p_pos, p_pos])
    ids = np.array([f"id{k:04d}" for k in rng.permutation(n)], dtype=object)
    return y, proba, ids


def draw(strategy, size, seed, y, proba, ids):
    return draw_sample(strategy, size, seed, y_true=y, proba=proba, classes=CLASSES, ids=ids)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_sample(strategy):
    y, proba, ids = population()
    a = draw(strategy, 15, 11, y, proba, ids)
    b = draw(strategy, 15, 11, y, proba, ids)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert (a.strategy, a.requested, a.seed) == (strategy, 15, 11)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_rows_are_sorted_by_decision_id(strategy):
    y, proba, ids = population()
    sample = draw(strategy, 15, 5, y, proba, ids)
    chosen_ids = [ids[r] for r in sample.rows]
    assert chosen_ids == sorted(chosen_ids)
    assert len(set(sample.rows.tolist())) == len(sample.rows)  # no row twice
    assert sample.rows.dtype.kind == "i"


def test_rows_sorted_by_numeric_id_not_text():
    y, proba, _ = population(50)
    ids = np.array([int(v) for v in np.random.default_rng(1).permutation(50) * 7], dtype=object)
    sample = draw("random", 12, 0, y, proba, ids)
    chosen = [ids[r] for r in sample.rows]
    assert chosen == sorted(chosen)  # 7 < 14 < 105 numerically, not as text


def test_random_differs_between_seeds():
    y, proba, ids = population()
    samples = {tuple(draw("random", 10, seed, y, proba, ids).rows.tolist()) for seed in range(5)}
    assert len(samples) == 5


def test_random_is_uniform_without_replacement():
    y, proba, ids = population(30)
    whole = draw("random", 30, 3, y, proba, ids)
    assert sorted(whole.rows.tolist()) == list(range(30))
    assert whole.note is None


def test_stratified_keeps_both_classes_even_when_one_is_rare():
    y, proba, ids = population(500, minority=0.02)
    assert 0 < np.sum(y == "malignant") < 20
    for seed in range(10):
        sample = draw("stratified", 5, seed, y, proba, ids)
        labels = set(y[sample.rows].tolist())
        assert labels == {"benign", "malignant"}, seed
        assert len(sample.rows) == 5


def test_stratified_is_proportional():
    y, proba, ids = population(400, minority=0.3)
    share = np.mean(y == "malignant")
    sample = draw("stratified", 40, 2, y, proba, ids)
    assert len(sample.rows) == 40
    assert np.sum(y[sample.rows] == "malignant") == round(40 * share)


def test_stratified_three_classes_size_below_class_count():
    y = np.array(["a"] * 10 + ["b"] * 10 + ["c"] * 10, dtype=object)
    proba = np.full((30, 3), 1 / 3)
    ids = np.arange(30).astype(object)
    sample = draw_sample("stratified", 2, 0, y_true=y, proba=proba, classes=["a", "b", "c"], ids=ids)
    assert len(sample.rows) == 2 and len(set(y[sample.rows])) == 2


def test_boundary_picks_smallest_margins():
    y, proba, ids = population()
    margin = np.abs(proba[:, 1] - proba[:, 0])
    sample = draw("boundary", 12, 4, y, proba, ids)
    assert sorted(sample.rows.tolist()) == sorted(np.argsort(margin)[:12].tolist())
    assert margin[sample.rows].max() <= np.sort(margin)[11]
    assert sample.available == len(y)


def test_boundary_uses_top_two_classes():
    # Three classes: the margin is between the two most probable, not between the first two columns.
    proba = np.array([[0.1, 0.45, 0.45], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33], [0.05, 0.05, 0.9]])
    y = np.array(["a", "b", "c", "c"], dtype=object)
    sample = draw_sample("boundary", 2, 0, y_true=y, proba=proba, classes=["a", "b", "c"],
                         ids=np.arange(4).astype(object))
    assert sample.rows.tolist() == [0, 2]


def test_boundary_ties_broken_by_seed():
    y = np.array(["benign", "malignant"] * 20, dtype=object)
    proba = np.full((40, 2), 0.5)  # every margin is 0
    ids = np.arange(40).astype(object)
    picks = {tuple(draw("boundary", 5, seed, y, proba, ids).rows.tolist()) for seed in range(4)}
    assert len(picks) > 1
    again = draw("boundary", 5, 0, y, proba, ids).rows
    np.testing.assert_array_equal(again, draw("boundary", 5, 0, y, proba, ids).rows)


def test_misclassified_only_picks_wrong_rows():
    y, proba, ids = population()
    predicted = np.asarray(CLASSES, dtype=object)[proba.argmax(axis=1)]
    wrong = predicted != y
    assert 10 < wrong.sum() < len(y)
    sample = draw("misclassified", 8, 0, y, proba, ids)
    assert len(sample.rows) == 8
    assert wrong[sample.rows].all()
    assert sample.available == wrong.sum()
    assert sample.note is None


def test_misclassified_caps_at_available_with_note():
    y, proba, ids = population()
    predicted = np.asarray(CLASSES, dtype=object)[proba.argmax(axis=1)]
    wrong = np.flatnonzero(predicted != y)
    sample = draw("misclassified", 500, 0, y, proba, ids)
    assert sorted(sample.rows.tolist()) == sorted(wrong.tolist())
    assert sample.available == len(wrong) and sample.requested == 500
    assert sample.note is not None
    assert "500" in sample.note and str(len(wrong)) in sample.note and "misclassified" in sample.note


def test_misclassified_with_none_wrong_gives_empty_sample():
    y = np.array(["benign", "malignant"] * 5, dtype=object)
    proba = np.array([[0.9, 0.1], [0.2, 0.8]] * 5)
    sample = draw("misclassified", 3, 0, y, proba, np.arange(10).astype(object))
    assert len(sample.rows) == 0 and sample.available == 0 and sample.note


def test_unknown_strategy():
    y, proba, ids = population(10)
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        draw("worst", 3, 0, y, proba, ids)
