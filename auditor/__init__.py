"""auditor: signed, reproducible explainability audits of machine-learning models.

Data flows policy -> datasets and models -> sample -> explainers -> evidence -> report -> output.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
