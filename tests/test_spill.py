"""auditor.spill: the sequence an audit keeps its explanations and decisions in, on disk.

Real components: the loan audit's own decisions (evidence models derived from the registry, which pickle cannot
name) and its explainers' results, written to the temporary file and read back.
"""

from __future__ import annotations

import pickle

import pytest

from auditor.audit import prepare, run_audit
from auditor.evidence import evidence_types
from auditor.explainers.counterfactuals import CounterfactualsResult
from auditor.plan import plan_run
from auditor.policy import load_policy
from auditor.spill import Spilled


@pytest.fixture(scope="module")
def evidence(loans, tmp_path_factory):
    path = loans.write(tmp_path_factory.mktemp("spill"), sample__size=6,
                       explanations=[{"type": "lime", "num_samples": 200}, {"type": "counterfactuals", "count": 1}])
    policy = load_policy(path)
    return run_audit(plan_run(policy), prepare(policy))


def test_an_audit_keeps_its_decisions_on_disk_and_they_read_back_as_they_were_made(evidence):
    subject = evidence.subjects[0]
    assert isinstance(subject.decisions, Spilled) and len(subject.decisions) == 6
    record = evidence_types().Decision
    read = list(subject.decisions)
    assert all(type(d) is record for d in read)
    # the same fields, and the same JSON, as the decisions validated from their own dump
    again = [record.model_validate_json(d.model_dump_json()) for d in read]
    assert read == again and subject.decisions == again and again == subject.decisions
    assert [d.model_dump_json() for d in read] == [d.model_dump_json() for d in again]
    # the whole evidence dumps the spilled decisions as a list, the same as its stream does
    assert evidence.to_json().encode("utf-8") == b"".join(evidence.json_chunks(size=1000))


def test_items_round_trip_and_an_item_put_back_replaces_it(evidence):
    results = [d.explanations["counterfactuals"] for d in evidence.subjects[0].decisions]
    assert all(isinstance(r, CounterfactualsResult) for r in results)
    spilled = Spilled(results)
    assert list(spilled) == results and spilled[-1] == results[-1] and spilled[1:4] == results[1:4]
    assert [spilled[i] for i in range(len(results))] == results
    changed = spilled[2]
    changed.asked = changed.asked + 5
    assert spilled[2] is changed  # the kept copy, until put back or pushed out
    spilled[2] = changed
    assert list(spilled)[2].asked == changed.asked and list(spilled)[3] == results[3] and len(spilled) == len(results)
    for i in range(len(results)):  # pushes item 2 out of those kept: read back from the file, changed
        spilled[i]
    assert spilled[2].asked == changed.asked
    with pytest.raises(IndexError):
        spilled[len(results)]
    assert spilled != results and spilled != results[:-1] and Spilled(results) == results


def test_a_spilled_sequence_pickles_as_a_list_and_its_file_goes_with_it(evidence):
    results = Spilled(d.explanations["lime"] for d in evidence.subjects[1].decisions)
    copy = pickle.loads(pickle.dumps(results))
    assert type(copy) is list and copy == results and len(copy) == 6
    spilled = Spilled([1, "two", {"three": 3.0}])
    handle = spilled._file
    del spilled
    assert handle.closed
