"""auditor.executors: the same evidence whether the explainers run in one chunk, in many, or on a Dask cluster.

Real components: the loan models (a scikit-learn pipeline and a TorchScript MLP) with LIME, Integrated
Gradients, counterfactuals under constraints and surrogate rules; a real ``distributed`` LocalCluster with two
worker processes, to which the models are shipped by pickling (TorchScript as its saved bytes).
"""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
from click.testing import CliRunner

from auditor import executors
from auditor.audit import prepare, run_audit
from auditor.plan import plan_run
from auditor.cli import cli
from auditor.evidence import evidence_model
from auditor.explainers import Batch
from auditor.policy import load_policy

EXPLANATIONS = [
    {"type": "integrated_gradients", "n_steps": 16},
    {"type": "lime", "num_samples": 300},
    {"type": "counterfactuals", "count": 2, "immutable": ["housing"],
     "permitted_range": {"income": [20, 90], "purpose": ["car", "education", "furniture"]}},
    {"type": "rules", "max_depth": 3, "min_samples_leaf": 10},
]


@pytest.fixture(scope="module")
def audit(loans, tmp_path_factory):
    """The loan policy with 11 sampled decisions; (policy, prepared, evidence JSON of a one-chunk local run)."""
    path = loans.write(tmp_path_factory.mktemp("executors"), sample__size=11, explanations=EXPLANATIONS)
    policy = load_policy(path)
    prepared = prepare(policy)
    evidence = run_audit(plan_run(policy), prepared, executor=executors.LocalExecutor())
    subjects = {s.model.id: s for s in evidence.subjects}
    assert len(subjects["pipe"].decisions) == 11
    # every local method ran on both models where it applies: the comparison covers them all
    assert {m.name for m in subjects["mlp"].methods} == {"integrated_gradients", "lime", "counterfactuals", "rules"}
    assert any(d.explanations["counterfactuals"].counterfactuals for d in subjects["pipe"].decisions)
    return policy, prepared, evidence.to_json()


def test_model_adapters_pickle_for_workers(loans):
    for model_id in ("pipe", "mlp"):
        prep = loans.prepared[model_id]
        copy = pickle.loads(pickle.dumps(prep.model))
        np.testing.assert_array_equal(copy.predict_proba(prep.dataset.X), prep.model.predict_proba(prep.dataset.X))
        assert copy.sha256 == prep.model.sha256


def test_many_small_chunks_give_the_same_explanations(audit, monkeypatch):
    """Every decision's explanation depends on its own seed only: cutting the sample into 4 chunks changes
    nothing, except float32 rounding in the gradients of Integrated Gradients (the network's batch shape)."""
    policy, prepared, expected = audit
    monkeypatch.setattr(executors, "CHUNK_DECISIONS", 3)
    assert [len(c) for c in executors.chunks(Batch(X=np.zeros((11, 2)), ids=list(range(11))))] == [3, 3, 3, 2]
    whole = evidence_model().model_validate_json(expected)
    chunked = run_audit(plan_run(policy), prepared, executor=executors.LocalExecutor())
    for a, b in zip(whole.subjects, chunked.subjects):
        assert [d.id for d in a.decisions] == [d.id for d in b.decisions]
        for da, db in zip(a.decisions, b.decisions):
            for name, ra in da.explanations.items():
                rb = db.explanations[name]
                if name == "integrated_gradients":
                    assert rb.attributions == pytest.approx(ra.attributions, rel=1e-5, abs=1e-7)
                else:
                    assert ra == rb, (a.model.id, da.id, name)
        assert a.global_explanations == b.global_explanations


def test_dask_local_cluster_gives_the_same_evidence(audit, monkeypatch):
    """The acceptance test: a LocalCluster of 2 worker processes, byte-identical evidence to this process."""
    policy, prepared, _ = audit
    monkeypatch.setattr(executors, "CHUNK_DECISIONS", 3)  # 4 chunks per method, shared by 2 workers
    local = run_audit(plan_run(policy), prepared, executor=executors.LocalExecutor()).to_json()
    environment = dict(os.environ)
    with executors.DaskExecutor(workers=2) as dask:
        # the LocalCluster's worker settings (OMP_NUM_THREADS=1...) must not leak into this process
        assert dict(os.environ) == environment
        assert len(dask.client.scheduler_info()["workers"]) == 2
        seen = []
        evidence = run_audit(plan_run(policy), prepared, executor=dask,
                             progress=lambda name, total: seen.append((name, total)) or (lambda n: None))
        ran_on = dask.client.run(lambda: __import__("os").getpid())
    assert evidence.to_json() == local
    assert ("lime · pipe", 11) in seen
    assert len(set(ran_on.values())) == 2 and os.getpid() not in ran_on.values()


@pytest.mark.parametrize(("value", "message"), [
    ("spark", "unknown executor"),
    ("dask://", "needs a scheduler address"),
    ("dask://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
])
def test_bad_executor_is_a_user_error(loans, tmp_path, value, message):
    path = loans.write(tmp_path)
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out"), "-q", "--executor", value])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - started < 20  # a refused connection is reported at once, not after a timeout
