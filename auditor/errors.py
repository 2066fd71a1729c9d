"""Errors the auditor raises, each carrying the exit code the CLI returns.

The tree::

    AuditorError                    exit 2 unless stated: the user can fix it
    ├── PolicyError(ValueError)     the policy file is invalid; holds every Problem found
    ├── DataError(ValueError)       a dataset cannot be loaded or fails a check
    ├── ModelError(ValueError)      a model cannot be loaded, is untrusted, or does not fit its data
    ├── ExplanationError(RuntimeError)  an explainer cannot run on this model/data
    ├── OutputError(OSError)        the output folder cannot be written
    ├── SigningError                the signing identity cannot be loaded or used (auditor.signing)
    ├── HistoryError                the run history cannot be opened or written (auditor.history)
    └── VerificationError           exit 3: a signed audit does not verify

The CLI catches only ``AuditorError``: it prints ``Error: <message>`` and the hint, and exits with
``exit_code``, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuditorError",
    "DataError",
    "ExplanationError",
    "ModelError",
    "OutputError",
    "PolicyError",
    "Problem",
    "VerificationError",
    "first_line",
]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a library's error, quoted in ours); its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AuditorError(Exception):
    """Base of every error a user can act on."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  Fix: {self.hint}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a policy file: where it is, what is wrong, and how to fix it."""

    file: str
    field: str
    message: str
    fix: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.field}: {self.message}"
        return f"{text}\n    Fix: {self.fix}" if self.fix else text


class PolicyError(AuditorError, ValueError):
    """The policy is invalid. ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in policy"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))

    def __str__(self) -> str:
        return self.message


class DataError(AuditorError, ValueError):
    """A dataset cannot be loaded or fails a check (NaN, empty, one class, unknown columns)."""


class ModelError(AuditorError, ValueError):
    """A model cannot be loaded safely, or does not fit the dataset it is audited on."""


class ExplanationError(AuditorError, RuntimeError):
    """An explainer cannot run on this model or data as configured."""


class OutputError(AuditorError, OSError):
    """The output folder cannot be created or would overwrite something."""


class VerificationError(AuditorError):
    """A signed audit fails verification: a file changed, or the signature does not match."""

    exit_code = 3
