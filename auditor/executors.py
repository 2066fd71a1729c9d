"""Where the per-decision work of the explainers runs: in this process, or on a Dask cluster.

Every local explainer already batches its work across decisions and derives each decision's randomness
from the audit seed and the decision's id (:func:`~auditor.explainers.base.decision_seed`), so a
decision's explanation does not depend on which other decisions share its batch. An executor therefore
only has to cut the sampled decisions into chunks, hand each chunk to ``explainer.explain`` and put the
results back in order, written to disk as they come (:class:`~auditor.spill.Spilled`: the main process
does not hold every decision's explanation):

- :class:`LocalExecutor` (the default) runs the chunks one after another in this process. Chunks keep
  memory flat as the sample grows: only one chunk's intermediate arrays exist at a time.
- :class:`DaskExecutor` (``auditor run --executor dask[://scheduler]``) sends the chunks to the workers of
  a ``distributed`` cluster (a LocalCluster when no address is given). The model and the background data
  are shipped to every worker once; TorchScript modules travel as their saved bytes.

Both cut the decisions at the same places (``CHUNK_DECISIONS``), so the evidence is the same whichever
runs it. Global explainers (surrogate rules, permutation importance) look at the whole dataset at once and
run in this process, and so do the explainers of text (transformers) models, which do not pickle intact.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace

import numpy as np

from .errors import AuditorError
from .explainers import Batch
from .spill import Spilled

__all__ = ["CHUNK_DECISIONS", "DaskExecutor", "Executor", "LocalExecutor", "chunks", "open_executor"]

CHUNK_DECISIONS = 256
"""Decisions per chunk: each explainer batches within a chunk (one model call per chunk and round)."""


def chunks(batch: Batch, size: int | None = None) -> list[Batch]:
    """The batch cut into consecutive chunks of at most ``size`` (default ``CHUNK_DECISIONS``) decisions;
    masks and rationales follow their decisions."""
    size = size or CHUNK_DECISIONS
    out = []
    for start in range(0, len(batch), size):
        part = slice(start, start + size)
        out.append(replace(
            batch, X=batch.X[part], ids=list(batch.ids[part]), y=None if batch.y is None else batch.y[part],
            masks=None if batch.masks is None else batch.masks[part],
            rationales=None if batch.rationales is None else list(batch.rationales[part])))
    return out


def _explain_chunk(explainer, model, chunk: Batch, background: np.ndarray, seed: int, threads: int | None = None,
                   progress=None):
    """What runs one chunk, here or on a worker: (results, parameters, the library warnings it raised, as texts).
    No progress callback crosses processes."""
    from .formats import caught

    if threads:
        import torch

        torch.set_num_threads(threads)
    with caught() as seen:
        results, parameters = explainer.explain(model, chunk, background=background, seed=seed, progress=progress)
    return results, parameters, seen.texts


class Executor:
    """Runs a local explainer over a batch of decisions; returns (results in batch order, a Spilled; parameters).

    Library warnings raised while explaining are caught where they are raised (in this process or on a
    worker) and collected in ``warnings``, once each, instead of being printed."""

    name: str = "local"

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def _record(self, texts: list[str]) -> None:
        self.warnings.extend(t for t in texts if t not in self.warnings)

    def explain(self, explainer, model, batch: Batch, *, background: np.ndarray, seed: int, progress=None):
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds (a cluster, a connection)."""

    def describe(self) -> str:
        return "this process"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """The chunks one after another, in this process."""

    name = "local"

    def explain(self, explainer, model, batch: Batch, *, background: np.ndarray, seed: int, progress=None):
        results, parameters = Spilled(), None
        for chunk in chunks(batch):
            part, parameters, texts = _explain_chunk(explainer, model, chunk, background, seed, progress=progress)
            results.extend(part)
            self._record(texts)
        if parameters is None:  # an empty batch
            part, parameters, texts = _explain_chunk(explainer, model, batch, background, seed, progress=progress)
            self._record(texts)
            return Spilled(part), parameters
        return results, parameters


class DaskExecutor(Executor):
    """The chunks on the workers of a Dask ``distributed`` cluster, results gathered in order.

    ``address`` is a scheduler address (``tcp://host:8786``); None starts a LocalCluster of ``workers``
    single-threaded worker processes on this machine. Workers need the auditor and its dependencies
    installed; they do not need the policy's files, since the model and background data are sent to them.
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, workers: int = 2) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - distributed is in the lock file
            raise AuditorError("--executor dask needs the 'distributed' package",
                               hint="pip install 'auditor[dask]' (make setup installs it)") from None
        super().__init__()
        self.address = address
        self._cluster = None
        # Starting a LocalCluster writes its workers' settings (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1,
        # PYTHONHASHSEED...) into this process's environment, where numerical libraries that initialise
        # lazily would read them and round differently: put the environment back once the workers run.
        environment = dict(os.environ)
        try:
            if address is None:
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self.client = Client(self._cluster)
            else:
                _refuses(address)
                self.client = Client(address, timeout="10s")
        except OSError as exc:
            self.close()
            raise AuditorError(f"--executor: cannot reach the Dask scheduler at {address}: {exc}",
                               hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                               "or write --executor dask for a cluster on this machine") from None
        finally:
            os.environ.clear()
            os.environ.update(environment)
        self._shipped: dict[int, object] = {}
        # Dask starts workers with one thread for numerical libraries (OMP_NUM_THREADS=1). torch's float32
        # reductions depend on its thread count in their last bits, so every task uses this process's count
        # (set in the thread that runs it: OpenMP's setting is per thread): the same evidence as a run here.
        self._threads = _torch_threads()

    def _ship(self, value):
        """Send a model or an array to every worker once; later tasks refer to it."""
        key = id(value)
        if key not in self._shipped:
            _pickle_architectures_by_value(value)
            self._shipped[key] = (value, self.client.scatter(value, broadcast=True, hash=False))
        return self._shipped[key][1]

    def explain(self, explainer, model, batch: Batch, *, background: np.ndarray, seed: int, progress=None):
        from distributed import as_completed

        if not model.ships_to_workers:
            # e.g. transformers models do not survive the trip to a worker intact (attention outputs come back
            # empty after unpickling, and some tokenizers do not pickle): explain them in this process.
            return LocalExecutor().explain(explainer, model, batch, background=background, seed=seed,
                                           progress=progress)
        parts = chunks(batch)
        if not parts:
            return LocalExecutor.explain(self, explainer, model, batch, background=background, seed=seed)
        model_f, background_f = self._ship(model), self._ship(background)
        futures = {self.client.submit(_explain_chunk, explainer, model_f, part, background_f, seed, self._threads,
                                      pure=False): i for i, part in enumerate(parts)}
        results, parameters = Spilled(), None
        waiting: dict[int, tuple] = {}  # chunks back before one ahead of them
        following = 0
        for future in as_completed(futures):
            i = futures.pop(future)
            waiting[i] = future.result()
            if progress:
                progress(len(parts[i]))
            while following in waiting:  # in chunk order, as the local executor records them; to disk as they come
                part, params, texts = waiting.pop(following)
                results.extend(part)
                self._record(texts)
                parameters = params if following == 0 else parameters
                following += 1
        return results, parameters

    def describe(self) -> str:
        workers = len(self.client.scheduler_info().get("workers", {}))
        where = "a local Dask cluster" if self.address is None else f"the Dask cluster at {self.address}"
        return f"{where} ({workers} workers)"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if getattr(self, "client", None) is not None:
                self.client.close()
        with contextlib.suppress(Exception):
            if self._cluster is not None:
                self._cluster.close()


def _refuses(address: str) -> None:
    """Raise OSError at once when nothing listens at the scheduler's host and port: the Dask client would
    retry a refused connection until its timeout before saying so."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
        return  # another transport (inproc, ucx...): let the client judge
    with socket.create_connection((parts.hostname, parts.port), timeout=5):
        pass


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch.get_num_threads()


def _pickle_architectures_by_value(value) -> None:
    """Architecture files a policy names are loaded as ad-hoc modules that workers cannot import:
    tell cloudpickle to send their classes by value."""
    module = getattr(value, "module", None)
    name = type(module).__module__ if module is not None else ""
    if name.startswith("auditor_architecture_") and name in sys.modules:
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[name])


def open_executor(spec: str | None) -> Executor:
    """``--executor``: 'local' (default), 'dask' (a LocalCluster here) or 'dask://host:port'."""
    if spec in (None, "", "local"):
        return LocalExecutor()
    if spec == "dask":
        return DaskExecutor()
    if spec.startswith("dask://"):
        address = spec[len("dask://"):]
        if not address:
            raise AuditorError("--executor dask:// needs a scheduler address", hint="e.g. dask://10.0.0.5:8786")
        return DaskExecutor(address if "://" in address else f"tcp://{address}")
    raise AuditorError(f"--executor {spec!r}: unknown executor",
                       hint="use local, dask (a cluster on this machine) or dask://SCHEDULER-HOST:PORT")
