"""The Python API, for notebooks and scripts: the same audit as ``auditor run``, from Python objects.

- :func:`load_policy` reads and checks a policy file;
- :func:`run` audits what a policy names and returns an :class:`AuditResult` (written and signed when given
  ``out``, else in memory until :meth:`AuditResult.write`);
- :func:`audit` audits a fitted model on pandas DataFrames: it saves the model and the data beside a policy it
  drafts (:mod:`auditor.drafts`) and runs that policy, so ``auditor run`` on the policy it returns
  (:meth:`AuditResult.policy_yaml`) gives byte-identical evidence.

The CLI is a layer over the same steps (:mod:`auditor.pipeline`).
"""

from __future__ import annotations

import html as html_lib
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .audit import prepare, run_audit  # loaded first, so the package's ``audit`` stays this module's function
from .errors import AuditorError
from .policy import Policy, load_policy

__all__ = ["AuditResult", "audit", "load_policy", "run"]


class AuditResult:
    """One audit: its evidence and findings, its exit code, and the means to write, sign and render it."""

    def __init__(self, policy: Policy, evidence, *, plan=None, prepared=None, out: Path | None = None,
                 signed: bool = False) -> None:
        self.policy, self.evidence, self.out, self.signed = policy, evidence, out, signed
        self._plan, self._prepared = plan, prepared

    @property
    def findings(self) -> list:
        return list(self.evidence.findings)

    @property
    def exit_code(self) -> int:
        """0: every finding passed (warnings allowed); 1: at least one failed. As ``auditor run`` exits."""
        from .pipeline import exit_code

        return exit_code(self.evidence)

    def write(self, folder: str | Path, *, identity: str | Path | None = None, force: bool = False) -> Path:
        """Write the output folder as ``auditor run`` does: report, evidence, manifest, signed with ``identity``
        (a folder from ``auditor keys init``) when given; atomically, so a failure leaves nothing behind."""
        from .output import check_destination, write_atomically
        from .pipeline import package, resolve_identity

        if self._plan is None:
            raise AuditorError("this result was written when it ran; its output folder is " + str(self.out),
                               hint="run it again without out= to write it elsewhere")
        folder = Path(folder)
        check_destination(folder, force=force)
        signer = resolve_identity(Path(identity) if identity else None, self.policy)
        files, _ = package(self._plan, self._prepared, self.evidence, identity=signer)
        write_atomically(folder, files, force=force)
        self.out, self.signed = folder, signer is not None
        return folder

    def html(self) -> str:
        """The report as HTML (unsigned, as a preview)."""
        from .report import render_html

        return render_html(self.evidence)

    def policy_yaml(self) -> str:
        """The policy file this audit ran, as text: ``auditor run`` on it gives the same evidence."""
        return self.policy.file.read_text(encoding="utf-8")

    def _repr_html_(self) -> str:
        e = self.evidence
        esc = html_lib.escape
        rows = "".join(
            f"<tr><td>{esc(f.id)}</td><td>{esc(f.model or '')}</td><td><b>{esc(f.status.upper())}</b></td>"
            f"<td>{esc(f.message)}</td></tr>" for f in e.findings)
        counts = ", ".join(f"{n} {k}" for k, n in e.finding_counts.items()) or "no thresholds in the policy"
        subjects = "".join(f"<li>{esc(s.model.id)} on {esc(s.dataset.id)}: {s.sample.size} decisions explained "
                           f"({esc(', '.join(m.name for m in s.methods))})</li>" for s in e.subjects)
        where = f"<p>Written to <code>{esc(str(self.out))}</code>{' (signed)' if self.signed else ''}.</p>" if self.out else ""
        return (f"<div><h3>{esc(str(e.audit.get('title', '')))}</h3><p>Audit {esc(str(e.audit.get('id', '')))}: "
                f"{esc(counts)}; exit code {self.exit_code}.</p><ul>{subjects}</ul>"
                f"<table><tr><th>Finding</th><th>Model</th><th>Status</th><th>Message</th></tr>{rows}</table>"
                f"{where}</div>")

    def __repr__(self) -> str:
        return f"<AuditResult {self.evidence.audit.get('id')}: {self.evidence.finding_counts}, exit code {self.exit_code}>"


def run(policy: str | Path | Policy, *, out: str | Path | None = None, identity: str | Path | None = None,
        sample: int | None = None, seed: int | None = None, executor: str | None = None, force: bool = False,
        progress=None) -> AuditResult:
    """Audit what ``policy`` names (a path or a loaded policy). With ``out`` the output folder is written (and
    signed with ``identity``) as ``auditor run`` writes it; without, the result stays in memory."""
    path = policy.file if isinstance(policy, Policy) else Path(policy)
    if out is not None:
        from .pipeline import execute

        outcome = execute(path, out=Path(out), sample_size=sample, seed=seed, force=force,
                          identity_dir=Path(identity) if identity else None, progress=progress, executor=executor)
        return AuditResult(load_policy(path), outcome.evidence, out=outcome.out, signed=outcome.signed)
    from .executors import open_executor
    from .plan import plan_run

    loaded = policy if isinstance(policy, Policy) else load_policy(path)
    plan = plan_run(loaded, sample_size=sample, seed=seed, executor=executor)
    prepared = prepare(loaded)
    with open_executor(plan.executor) as runner:
        evidence = run_audit(plan, prepared, progress=progress, executor=runner)
    return AuditResult(loaded, evidence, plan=plan, prepared=prepared)


class CallableRegressor:
    """A function returning one score per row, as a regressor the auditor can save and load (by reference, like
    :class:`CallableModel`)."""

    def __init__(self, function: Callable) -> None:
        self.function = function

    def predict(self, X):
        return np.asarray(self.function(X), dtype=np.float64).reshape(len(X))


class CallableModel:
    """A function returning class probabilities, as a classifier the auditor can save and load (by reference:
    the function must be importable, i.e. defined at a module's top level)."""

    def __init__(self, function: Callable, classes: list) -> None:
        self.function, self.classes_ = function, np.asarray(classes, dtype=object)

    def predict_proba(self, X):
        return np.asarray(self.function(X), dtype=np.float64)


def _save_model(model, folder: Path, *, classes, features: list[dict], task: str = "classification"
                ) -> tuple[Path, dict[str, Any]]:
    """Save ``model`` in the format that suits it; the policy entry's extra fields."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        if not classes and task != "regression":
            raise AuditorError("a PyTorch model needs classes= (its class labels, in the order of its outputs), or "
                               "task='regression' for one that gives one score per row")
        width = sum(len(f["categories"]) if f.get("type") == "categorical" else 1 for f in features)
        program = torch.export.export(model.eval(), (torch.zeros(2, width),),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
        path = folder / "model.pt2"
        torch.export.save(program, str(path))
        return path, {}
    scikit = hasattr(model, "predict_proba") or (task == "regression" and hasattr(model, "predict")
                                                 and hasattr(model, "fit"))
    if scikit and not isinstance(model, (CallableModel, CallableRegressor)):
        import skops.io as sio

        data = sio.dumps(model)
        path = folder / "model.skops"
        path.write_bytes(data)
        # the caller handed this object over: its types are trusted, and the policy says which they are
        return path, {"trusted_types": sorted(sio.get_untrusted_types(data=data))}
    if callable(model) or isinstance(model, (CallableModel, CallableRegressor)):
        import joblib

        if not classes and task != "regression" and not isinstance(model, CallableModel):
            raise AuditorError("a function model needs classes= (its class labels, in the order of its outputs), or "
                               "task='regression' for one that returns one score per row")
        if isinstance(model, (CallableModel, CallableRegressor)):
            wrapped = model
        else:
            wrapped = CallableRegressor(model) if task == "regression" else CallableModel(model, classes)
        path = folder / "model.joblib"
        try:
            joblib.dump(wrapped, path)
        except Exception as exc:
            raise AuditorError(f"cannot save the function {getattr(model, '__name__', model)!r} for the audit: {exc}",
                               hint="define it at the top level of a module (a lambda or a closure cannot be "
                                    "saved), or pass a scikit-learn estimator or a torch module") from None
        return path, {"trust": "pickle"}
    raise AuditorError(f"cannot audit a {type(model).__name__}: give a fitted scikit-learn estimator, a torch "
                       "module or a function returning class probabilities")


def audit(model, data, *, target: str, explanations: list | None = None, audience: str = "medical",
          background=None, classes: list | None = None, positive_class=None, sample: int = 20, seed: int = 0,
          title: str | None = None, intended_use: str | None = None, owner: str | None = None,
          workdir: str | Path | None = None, out: str | Path | None = None,
          identity: str | Path | None = None, task: str | None = None) -> AuditResult:
    """Audit ``model`` (a fitted scikit-learn-compatible estimator, a torch module taking the encoded matrix, or a
    function returning class probabilities) on ``data`` (a DataFrame with the ``target`` column), against
    ``background`` (a DataFrame; default: ``data``). The model, the data and the policy are written to
    ``workdir`` (default: a new temporary folder), and the policy is run as ``auditor run`` runs it.

    ``explanations``: types (``["lime", "rules"]``) or policy entries (``[{"type": "lime", "num_samples": 500}]``);
    default: those suited to the model. ``task``: "regression" for a model that returns one score per row (a
    regressor's ``predict``, a torch module with one output, a function returning scores); default: a
    scikit-learn regressor is audited as one, anything else as a classifier."""
    import pandas as pd

    from .drafts import draft_tree, infer_features, policy_text

    if not isinstance(data, pd.DataFrame) or target not in data.columns:
        raise AuditorError(f"data must be a pandas DataFrame with the target column {target!r}")
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="auditor-"))
    folder.mkdir(parents=True, exist_ok=True)
    data.to_csv(folder / "data.csv", index=False)
    if background is not None:
        background.to_csv(folder / "background.csv", index=False)
    features = infer_features(data, {target})
    if task is None:
        task = "regression" if (getattr(model, "_estimator_type", None) == "regressor"
                                or (hasattr(model, "predict") and hasattr(model, "fit")
                                    and not hasattr(model, "predict_proba"))) else "classification"
    model_path, extra = _save_model(model, folder, classes=classes, features=features, task=task)
    entries = None if explanations is None else [{"type": e} if isinstance(e, str) else dict(e) for e in explanations]
    tree = draft_tree(model_path, folder / "data.csv", target, policy_dir=folder,
                      background=folder / "background.csv" if background is not None else None, audience=audience,
                      title=title, intended_use=intended_use, owner=owner, sample=sample, seed=seed,
                      trusted_types=extra.get("trusted_types"), trust=extra.get("trust"), classes=classes,
                      positive_class=positive_class, explanations=entries, task=task)
    (folder / "policy.yaml").write_text(policy_text(tree), encoding="utf-8")
    return run(folder / "policy.yaml", out=out, identity=identity)
