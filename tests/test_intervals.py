"""Confidence intervals of the performance figures (auditor.intervals, auditor.performance): their coverage on
simulated data, the weighted statistics the bootstrap computes against scikit-learn, sensitivity / specificity /
PPV / NPV at the operating threshold against a hand count, thresholds on an interval's bound, small groups,
and determinism."""

from __future__ import annotations

import time
from statistics import NormalDist

import numpy as np
import pytest
from sklearn import metrics

from auditor.audit import run_audit
from auditor.errors import PolicyError
from auditor.findings import evaluate
from auditor.intervals import bootstrap, resample_counts, weighted_auc, weighted_mean, wilson
from auditor.performance import (PerformanceSpec, _balanced, _f1, _r2, measure_groups, measure_performance,
                                 measure_regression)
from auditor.plan import plan_run
from auditor.policy import ThresholdSpec, load_policy

COVERAGE = (0.92, 0.98)


def _wilson_coverage(p: float, n: int, reps: int, level: float = 0.95, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    hits = rng.binomial(n, p, size=reps)
    covered = [(ci := wilson(k, n, level)).lower <= p <= ci.upper for k in hits]
    return float(np.mean(covered))


@pytest.mark.parametrize("p, n", [(0.3, 40), (0.9, 120), (0.05, 200)])
def test_wilson_interval_covers_the_true_proportion(p, n):
    coverage = _wilson_coverage(p, n, reps=2000)
    assert COVERAGE[0] <= coverage <= COVERAGE[1], coverage


def test_the_coverage_check_can_fail():
    """The same check on 80% intervals, or on the normal approximation at a small n, falls outside the window."""
    assert _wilson_coverage(0.3, 40, reps=2000, level=0.8) < COVERAGE[0]
    rng = np.random.default_rng(0)
    p, n = 0.05, 30
    k = rng.binomial(n, p, size=2000)
    half = 1.96 * np.sqrt(k / n * (1 - k / n) / n)
    wald = np.mean((k / n - half <= p) & (p <= k / n + half))
    assert wald < COVERAGE[0]


def test_wilson_matches_the_textbook_values():
    ci = wilson(30, 100)  # Newcombe (1998), Brown, Cai & DasGupta (2001): 0.2189 to 0.3958
    assert (round(ci.lower, 4), round(ci.upper, 4)) == (0.2189, 0.3958)
    assert ci.method == "wilson" and ci.n == 100 and ci.level == 0.95
    assert wilson(0, 1).lower == 0 and wilson(0, 1).upper == pytest.approx(1.96 ** 2 / (1 + 1.96 ** 2), abs=1e-4)
    assert wilson(0, 0) is None


def _auc_coverage(reps: int, n: int, seed: int = 0) -> float:
    """Scores N(0, 1) for negatives and N(d, 1) for positives: the true AUC is Phi(d / sqrt(2))."""
    d = 1.0
    true_auc = NormalDist().cdf(d / np.sqrt(2))
    rng = np.random.default_rng(seed)
    covered = []
    for r in range(reps):
        truth = rng.random(n) < 0.4
        score = rng.normal(size=n) + d * truth
        ci = bootstrap(weighted_auc, truth, score, seed=r, reps=1000)
        covered.append(ci.lower <= true_auc <= ci.upper)
    return float(np.mean(covered))


def test_bootstrap_auc_interval_covers_the_true_auc():
    coverage = _auc_coverage(reps=200, n=200)
    assert COVERAGE[0] <= coverage <= COVERAGE[1], coverage


@pytest.mark.slow
def test_bootstrap_auc_interval_covers_the_true_auc_over_more_repetitions():
    coverage = _auc_coverage(reps=1000, n=150, seed=1)
    assert COVERAGE[0] <= coverage <= COVERAGE[1], coverage


def test_weighted_statistics_equal_scikit_learn_on_a_resample():
    """The bootstrap computes each replicate from resample counts; on one resample those figures are
    scikit-learn's on the resampled rows (ties in the scores included), and on unit counts the plain ones."""
    rng = np.random.default_rng(3)
    n, k = 150, 3
    y = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    proba[:, 0] = np.round(proba[:, 0], 1)  # ties
    pred = proba.argmax(axis=1)
    truth = y == 0
    idx = rng.integers(0, n, n)
    w = np.vstack([np.ones(n), np.bincount(idx, minlength=n)]).astype(float)
    for row, rows in ((0, np.arange(n)), (1, idx)):
        assert weighted_auc(w, truth, proba[:, 0])[row] == pytest.approx(
            metrics.roc_auc_score(truth[rows], proba[rows, 0]))
        assert _balanced(w, np.eye(k)[y], pred == y)[row] == pytest.approx(
            metrics.balanced_accuracy_score(y[rows], pred[rows]))
        assert _f1(w, (pred == 1) & (y == 1), pred == 1, y == 1)[row] == pytest.approx(
            metrics.f1_score(y[rows] == 1, pred[rows] == 1))
        assert weighted_mean(w, (proba[:, 0] - truth) ** 2)[row] == pytest.approx(
            metrics.brier_score_loss(truth[rows], proba[rows, 0]))
        score = proba[:, 1] * 10
        assert _r2(w, y.astype(float), score)[row] == pytest.approx(metrics.r2_score(y[rows], score[rows]))
    assert np.isnan(weighted_auc(np.eye(n)[:1] * n, truth, proba[:, 0])[0])  # one row drawn n times: one class


def test_resample_counts_are_the_same_in_blocks():
    """The counts depend on nothing but n, reps and the seed."""
    a = np.vstack(list(resample_counts(50, 300, seed=4)))
    b = np.vstack(list(resample_counts(50, 300, seed=4)))
    assert a.shape == (300, 50) and (a.sum(axis=1) == 50).all() and (a == b).all()
    assert not (a == np.vstack(list(resample_counts(50, 300, seed=5)))).all()


@pytest.mark.parametrize("n", [50, 333])
def test_draws_in_parts_are_the_draws_made_at_once(monkeypatch, n):
    """Large draws are made and handed to the statistic in parts of about COUNTS counts (the temporaries stay
    small whatever the rows): the parts stack up to the counts of the draw made at once, so the resamples are the
    same, the AUC interval too, and a mean's within rounding (a matrix product over fewer rows may round a
    replicate in its last bit)."""
    rng = np.random.default_rng(n)
    truth = rng.random(n) < 0.4
    score = truth * 0.2 + rng.random(n)

    def draw():
        counts = list(resample_counts(n, 1000, seed=3))
        return counts, bootstrap(weighted_auc, truth, score, seed=3), bootstrap(weighted_mean, score, seed=3)

    monkeypatch.setattr("auditor.intervals.COUNTS", 1000 * n)
    whole, auc, mean = draw()
    monkeypatch.setattr("auditor.intervals.COUNTS", 7 * n + 1)  # parts of 7 replicates: 143 of them, the last of 6
    parts, auc_parts, mean_parts = draw()
    assert len(whole) == 1 and len(parts) == 143 and {len(p) for p in parts} == {7, 6}
    assert (np.vstack(parts) == whole[0]).all()
    assert auc_parts == auc
    assert (mean_parts.lower, mean_parts.upper) == pytest.approx((mean.lower, mean.upper), rel=1e-14)
    assert mean_parts.replicates == mean.replicates == 1000


def test_performance_intervals_are_deterministic_and_contain_their_figure():
    rng = np.random.default_rng(0)
    n = 300
    y = np.where(rng.random(n) < 0.35, "yes", "no")
    p = np.clip(0.35 + 0.3 * (y == "yes") + rng.normal(0, 0.2, n), 0.01, 0.99)
    proba = np.column_stack([1 - p, p])
    spec = PerformanceSpec()
    start = time.perf_counter()
    one = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=spec, seed=7)
    assert time.perf_counter() - start < 1.0  # 300 rows, 1000 resamples of every bootstrapped figure
    again = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=spec, seed=7)
    other = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=spec, seed=8)
    assert one == again
    assert one.roc_auc_ci != other.roc_auc_ci and one.accuracy_ci == other.accuracy_ci  # Wilson needs no seed
    for name in ("accuracy", "balanced_accuracy", "roc_auc", "brier_score", "log_loss"):
        ci = getattr(one, f"{name}_ci")
        assert ci.lower <= getattr(one, name) <= ci.upper and ci.level == 0.95, name
    assert one.roc_auc_ci.method == "bootstrap" and one.roc_auc_ci.replicates == 1000 and one.roc_auc_ci.n == n
    for c in one.per_class:
        assert c.precision_ci.lower <= c.precision <= c.precision_ci.upper and c.recall_ci.n == c.support
        assert c.f1_ci.lower <= c.f1 <= c.f1_ci.upper
    assert all(b.observed_ci.n == b.count for b in one.calibration)
    wider = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=PerformanceSpec(confidence=0.99),
                                seed=7)
    assert wider.roc_auc_ci.lower < one.roc_auc_ci.lower and wider.accuracy_ci.upper > one.accuracy_ci.upper
    off = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=PerformanceSpec(bootstrap=0), seed=7)
    assert off.roc_auc_ci is None and off.brier_score_ci is None and off.accuracy_ci == one.accuracy_ci


def test_operating_point_equals_a_hand_count():
    # P(yes):  0.9  0.8  0.7  0.6  0.4  0.3  0.2  0.1  0.65 0.55
    # truth:   yes  yes  no   yes  yes  no   no   no   no   yes
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.65, 0.55])
    y = np.array(["yes", "yes", "no", "yes", "yes", "no", "no", "no", "no", "yes"])
    proba = np.column_stack([1 - p, p])
    # at 0.6 the model says yes for 0.9, 0.8, 0.7, 0.6, 0.65: TP = 3 (0.9, 0.8, 0.6), FP = 2 (0.7, 0.65);
    # it says no for 0.4, 0.3, 0.2, 0.1, 0.55: FN = 2 (0.4, 0.55), TN = 3 (0.3, 0.2, 0.1)
    op = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=PerformanceSpec(operating_point=0.6),
                             seed=0).operating_point
    assert (op.threshold, op.positive) == (0.6, "yes")
    assert (op.true_positive, op.false_positive, op.true_negative, op.false_negative) == (3, 2, 3, 2)
    assert (op.sensitivity, op.specificity, op.ppv, op.npv) == (3 / 5, 3 / 5, 3 / 5, 3 / 5)
    assert op.sensitivity_ci == wilson(3, 5) and op.ppv_ci.n == 5
    # at 0.5 (the default) 0.55 is yes too: TP = 4, FN = 1
    op = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, seed=0).operating_point
    assert (op.true_positive, op.false_negative, op.sensitivity, op.npv) == (4, 1, 4 / 5, 3 / 4)
    # no positive decision at all: PPV is undefined, not 0
    op = measure_performance(proba, y, ["no", "yes"], ["no", "yes"], 1, spec=PerformanceSpec(operating_point=1.0),
                             seed=0).operating_point
    assert op.ppv is None and op.ppv_ci is None and op.specificity == 1.0


def test_multiclass_has_intervals_and_no_operating_point():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    proba = rng.dirichlet(np.ones(3), 90)
    proba[np.arange(90), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    perf = measure_performance(proba, y, [0, 1, 2], ["a", "b", "c"], 2, seed=0)
    assert perf.operating_point is None and perf.brier_score_ci is None
    assert perf.roc_auc_ci.lower <= perf.roc_auc <= perf.roc_auc_ci.upper


def test_regression_intervals():
    rng = np.random.default_rng(2)
    y = rng.normal(150, 50, 200)
    pred = y + rng.normal(0, 30, 200)
    one = measure_regression(pred, y, seed=3)
    assert one == measure_regression(pred, y, seed=3)
    for name in ("rmse", "mae", "r2"):
        ci = getattr(one, f"{name}_ci")
        assert ci.method == "bootstrap" and ci.lower <= getattr(one, name) <= ci.upper, name
    assert 25 < one.rmse_ci.lower < 30 < one.rmse_ci.upper < 35  # the noise's standard deviation is 30


def test_small_groups_are_marked_and_have_wide_intervals():
    rng = np.random.default_rng(5)
    n = 200
    y = np.where(rng.random(n) < 0.5, "yes", "no")
    p = np.clip(0.5 + 0.25 * np.where(y == "yes", 1, -1) + rng.normal(0, 0.2, n), 0.01, 0.99)
    groups = np.where(np.arange(n) < 12, "small", "large")
    stats = {g.group: g for g in measure_groups(np.column_stack([1 - p, p]), y, ["no", "yes"], 1, groups,
                                                seed=0)}
    assert stats["small"].too_few_rows and not stats["large"].too_few_rows
    width = {g: s.accuracy_ci.upper - s.accuracy_ci.lower for g, s in stats.items()}
    assert width["small"] > 2 * width["large"]
    assert stats["small"].positive_rate_ci.n == 12 and stats["large"].roc_auc_ci.n == 188


def test_policy_settings_are_validated(tmp_path, write_policy):
    with pytest.raises(ValueError, match="too few for a percentile interval"):
        PerformanceSpec(bootstrap=50)
    policy = load_policy(write_policy(tmp_path, performance={"operating_point": 0.3, "min_group_rows": 10},
                                      thresholds=[{"metric": "performance.roc_auc", "min": 0.5, "compare": "lower"}]))
    assert policy.performance.operating_point == 0.3 and policy.thresholds[0].compare == "lower"
    assert policy.performance.bootstrap == 1000 and policy.performance.confidence == 0.95
    with pytest.raises(PolicyError, match="confidence interval"):
        load_policy(write_policy(tmp_path, thresholds=[{"metric": "agreement.rate", "min": 0.5, "compare": "lower"}]))
    with pytest.raises(PolicyError, match="no interval to test") as err:
        load_policy(write_policy(tmp_path, performance={"bootstrap": 0},
                                 thresholds=[{"metric": "performance.roc_auc", "min": 0.5, "compare": "lower"}]))
    assert "thresholds[0].compare" in str(err.value)


def _tiny_policy(tiny, thresholds, **performance):
    policy = tiny["policy"].model_copy(deep=True)
    policy._file = tiny["policy"].file
    from auditor.explainers.permutation import PermutationImportanceSpec

    policy.explanations = [PermutationImportanceSpec(type="permutation_importance", n_repeats=2)]
    policy.thresholds = [ThresholdSpec(**t) for t in thresholds]
    policy.performance = PerformanceSpec(**performance)
    return policy


def test_a_threshold_on_the_lower_bound_fails_where_the_point_passes(tiny):
    policy = _tiny_policy(tiny, [{"metric": "performance.roc_auc", "min": 0.5}])
    evidence = run_audit(plan_run(policy, sample_size=2), [tiny["logreg"]])
    perf = evidence.subjects[0].performance
    ci = perf.roc_auc_ci
    assert ci is not None and ci.lower < perf.roc_auc
    bound = (ci.lower + perf.roc_auc) / 2  # the figure reaches it, its interval's lower bound does not
    policy.thresholds = [ThresholdSpec(metric="performance.roc_auc", min=bound, id="point"),
                         ThresholdSpec(metric="performance.roc_auc", min=bound, compare="lower", id="lower"),
                         ThresholdSpec(metric="performance.roc_auc", max=ci.upper - 1e-9, compare="upper", id="upper")]
    point, lower, upper = evaluate(policy, evidence)
    assert point.status == "pass" and point.compare == "point" and point.interval == ci
    assert lower.status == "fail" and lower.compare == "lower" and lower.value == perf.roc_auc
    assert lower.interval == ci and lower.threshold == bound and lower.comparator == ">="
    assert "lower bound tested" in lower.message and f"{ci.lower:.4g}" in lower.message
    assert upper.status == "fail"
    # run as part of the audit, the finding is in the evidence with its interval
    audited = run_audit(plan_run(policy, sample_size=2), [tiny["logreg"]])
    assert [f.status for f in audited.findings] == ["pass", "fail", "fail"]
    assert audited.findings[1].model_dump()["interval"]["lower"] == ci.lower


def test_group_findings_carry_their_interval_and_say_when_a_group_is_too_small(tiny):
    policy = _tiny_policy(tiny, [{"metric": "performance.accuracy", "min": 0.0, "by": "f0", "bins": [1.2],
                                  "compare": "lower"}], min_group_rows=30)
    evidence = run_audit(plan_run(policy, sample_size=2), [tiny["logreg"]])
    groups = evidence.subjects[0].subgroups["f0"]
    small = [g for g in groups if g.too_few_rows]
    assert small and all(g.rows < 30 for g in small) and all(not g.too_few_rows for g in groups if g.rows >= 30)
    by_group = {f.subgroup: f for f in evidence.findings}
    for g in groups:
        f = by_group[f"f0 = {g.group}"]
        assert f.interval == g.accuracy_ci and f.status == "pass"
        assert ("too few rows to conclude" in f.message) == g.too_few_rows


def test_audit_intervals_are_deterministic_and_follow_the_seed(tiny):
    policy = _tiny_policy(tiny, [{"metric": "performance.brier_score", "max": 1.0, "by": "f0", "bins": [0.0]}])
    first = run_audit(plan_run(policy, sample_size=2, seed=4), [tiny["logreg"]])
    second = run_audit(plan_run(policy, sample_size=2, seed=4), [tiny["logreg"]])
    other = run_audit(plan_run(policy, sample_size=2, seed=5), [tiny["logreg"]])
    assert first.to_json() == second.to_json()
    a, b = first.subjects[0], other.subjects[0]
    assert a.performance.roc_auc_ci != b.performance.roc_auc_ci
    assert a.performance.accuracy_ci == b.performance.accuracy_ci
    assert a.subgroups["f0"][0].brier_score_ci != b.subgroups["f0"][0].brier_score_ci


def test_the_audit_measures_at_the_policy_operating_point(tiny):
    policy = _tiny_policy(tiny, [], operating_point=0.3)
    evidence = run_audit(plan_run(policy, sample_size=2), [tiny["logreg"]])
    op = evidence.subjects[0].performance.operating_point
    prep = tiny["logreg"]
    p = prep.model.outputs(prep.modality.inputs(prep.dataset))[:, prep.model.positive_index]
    truth = np.asarray(prep.dataset.y) == "yes"
    assert op.threshold == 0.3 and op.positive == "yes"
    assert op.true_positive == int(np.sum((p >= 0.3) & truth)) and op.false_negative == int(np.sum((p < 0.3) & truth))
    assert op.sensitivity == op.true_positive / truth.sum()
