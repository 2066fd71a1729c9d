"""auditor: signed, reproducible explainability audits of machine-learning models.

Data flows policy -> datasets and models -> sample -> explainers -> evidence -> report -> output.

From Python::

    import auditor
    result = auditor.run("policies/credit_finance.yaml")            # or auditor.load_policy(path)
    result.findings, result.exit_code
    result.write("out/credit", identity=".dev-identity")            # atomic, signed, as `auditor run`
    result = auditor.audit(model, frame, target="outcome")          # a fitted model and a DataFrame
    print(result.policy_yaml())                                     # the policy it ran

``auditor.audit`` is the function; the module that computes evidence is ``auditor.audit`` in ``sys.modules``
(import it as ``from auditor.audit import run_audit``).
"""

__version__ = "0.1.0"

__all__ = [
    "AuditResult",
    "AuditorError",
    "DataError",
    "ExplanationError",
    "ModelError",
    "PolicyError",
    "VerificationError",
    "__version__",
    "audit",
    "load_policy",
    "run",
]

from .api import AuditResult, audit, load_policy, run  # noqa: E402  (after __version__, which they read)
from .errors import AuditorError, DataError, ExplanationError, ModelError, PolicyError, VerificationError  # noqa: E402
