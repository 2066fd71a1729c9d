"""The batched engine of the counterfactuals family: DiCE's random search (``dice_ml``'s ``DiceRandom``) for
every sampled decision at once, one model call per round. ``tests/test_counterfactual_engines.py`` holds it to
dice-ml's own search (validity, proximity, sparsity, diversity on the same decisions), and
``tests/test_counterfactuals_regression.py`` for a regression model's score range. Missing values: a
decision's missing value stays missing in every candidate unless the feature is fillable, and candidates
only ever take recorded values of a feature.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Batch, decision_seed

__all__ = ["BatchedRandomSearch"]


class BatchedRandomSearch:
    """DiCE's random search (``dice_ml.explainer_interfaces.dice_random``) for many decisions at once.

    The steps and defaults are DiCE's: ``SAMPLE_SIZE`` candidates per decision, each round changing one
    more randomly chosen feature of every candidate to a random value of that feature (uniform within the
    permitted or observed range, at the data's decimal precision; categories uniformly); a candidate counts
    when the other class has probability >= 0.5 (a regression model's: when its score is in the target range,
    as DiCE's regressor mode decides); a decision stops after two rounds once it has ``count``
    distinct such candidates; ``count`` are drawn from them; then DiCE's post-hoc sparsity search. What
    differs is the bookkeeping: numpy arrays for every decision instead of a DataFrame per decision, and one
    model call per round for all decisions. Each decision draws from its own generator seeded by its id, so
    its counterfactuals do not depend on what else is in the batch.
    """

    SAMPLE_SIZE = 1000  # DiceRandom's sample_size
    THRESHOLD = 0.5  # DiceRandom's stopping_threshold for binary models
    SPARSITY_QUANTILE = 0.1  # DiCE's posthoc_sparsity_param
    CHUNK_ROWS = 250_000  # candidate rows held (and scored per call) at once: bounds memory

    def __init__(self, model, background: np.ndarray, vary: list[str], permitted_range: dict,
                 fillable: list[str] = ()) -> None:
        space = model.space
        self.model = model
        self.fillable = np.array([n in fillable for n in space.names])
        self.vary = np.array([space.names.index(n) for n in vary], dtype=np.int64)
        self.varied = set(self.vary.tolist())
        self.limited = sorted(self.varied & {space.names.index(n) for n in permitted_range})
        self.samplers = []
        self.decimals = np.zeros(len(space.features), dtype=np.int64)
        self.thresholds = {}
        for i, f in enumerate(space.features):
            column = background[:, i]
            column = column[~np.isnan(column)]  # candidates take recorded values only
            if not len(column):
                column = np.zeros(1)
            allowed = permitted_range.get(f.name)
            if f.type == "numeric":
                self.decimals[i] = _decimals(column)
                low, high = (float(v) for v in allowed) if allowed else (float(column.min()), float(column.max()))
                self.samplers.append(("numeric", low, high))
                # DiCE's sparsity step only pulls back changes within min(10% quantile, MAD) of the data
                unique = np.unique(column)
                quantile = float(np.quantile(np.abs(unique - np.median(unique)), self.SPARSITY_QUANTILE))
                mad = float(np.median(np.abs(column - np.median(column))))
                self.thresholds[i] = min(quantile, mad if mad > 0 else 1.0)
            else:
                codes = ([space.categories[i].index(v) for v in allowed] if allowed
                         else np.unique(np.rint(column)).astype(np.int64).tolist())
                self.samplers.append(("categorical", np.array(codes, dtype=np.float64), None))
        # DiCE visits continuous features from the widest threshold down (a stable sort)
        self.sparsity_order = sorted(self.thresholds, key=lambda i: -self.thresholds[i])

    def run(self, batch: Batch, proba: np.ndarray, count: int, seed: int, progress,
            targets: np.ndarray | None = None) -> list[np.ndarray]:
        """Counterfactuals per decision. ``targets``: per decision the class to reach, or ``-1 - c`` for any class
        but ``c`` (multiclass 'any other'), or for a regression model a row ``[low, high]`` of scores to reach;
        default, for binary models, the other class."""
        per_chunk = max(1, self.CHUNK_ROWS // self.SAMPLE_SIZE)
        if targets is None:
            targets = 1 - proba.argmax(axis=1)
        found = []
        for start in range(0, len(batch), per_chunk):
            rows = np.arange(start, min(start + per_chunk, len(batch)))
            rngs = [np.random.default_rng(decision_seed(seed, batch.ids[k])) for k in rows]
            chosen = self._search(batch.X[rows], targets[rows], rngs, count)
            found.extend(self._sparsify(batch.X[rows], targets[rows], chosen))
            if progress:
                progress(len(rows))
        return found

    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        """SAMPLE_SIZE random values of every feature (one column per feature), drawn as DiCE draws them.

        DiCE reseeds numpy with the same seed before sampling each continuous feature, and Python's random
        before each categorical one, so a candidate's values all sit at the same quantile of their ranges
        (one uniform draw per candidate for continuous features, one for categorical ones). That coupling is
        what lets its random search flip a decision with few changes; it is kept here on purpose.
        """
        n = self.SAMPLE_SIZE
        u, v = rng.random(n), rng.random(n)
        out = np.empty((n, len(self.samplers)))
        for i, (kind, a, b) in enumerate(self.samplers):
            if i not in self.varied:
                continue
            if kind == "categorical":
                out[:, i] = a[np.minimum((v * len(a)).astype(np.int64), len(a) - 1)]
            elif self.decimals[i] == 0:
                low, high = math.ceil(a), math.floor(b)
                out[:, i] = np.minimum(low + np.floor(u * (high - low + 1)), high) if low <= high else a
            else:
                step = 10.0 ** -self.decimals[i]
                out[:, i] = np.clip(np.round(a + u * (b + step - a), self.decimals[i]), a, b)
        return out

    def _search(self, X: np.ndarray, targets: np.ndarray, rngs: list, count: int) -> list[np.ndarray]:
        d, n, size = len(X), X.shape[1], self.SAMPLE_SIZE
        draws = np.stack([self._draw(rng) for rng in rngs])
        # a decision's missing value stays missing in every candidate unless the feature is fillable
        kept = np.isnan(X) & ~self.fillable
        draws[np.repeat(kept[:, None, :], size, axis=1)] = np.nan
        candidates = np.repeat(X[:, None, :], size, axis=1)
        # A decision outside a permitted range cannot keep that value in any counterfactual: every
        # candidate starts with a value inside the range (DiCE leaves it, and such candidates fail the checks).
        outside = np.repeat(self._outside(X)[:, None, :], size, axis=1)
        candidates[outside] = draws[outside]
        found: list[list[np.ndarray]] = [[] for _ in range(d)]  # per decision, each round's hits
        active = np.ones(d, dtype=bool)
        every = np.arange(size)
        for round_ in range(1, len(self.vary) + 1):
            live = np.flatnonzero(active)
            if not len(live):
                break
            for k in live:  # every candidate changes one more feature (DiCE may pick one twice)
                feature = rngs[k].choice(self.vary, size)
                candidates[k, every, feature] = draws[k, every, feature]
            p = self.model.outputs(candidates[live].reshape(-1, n)).reshape(len(live), size, -1)
            for j, k in enumerate(live):
                hits = self._reaches(p[j], targets[np.full(size, k)])
                if hits.any():
                    found[k].append(candidates[k, hits])
                if round_ >= 2 and _distinct(found[k], count):
                    active[k] = False
        pools = [np.unique(np.concatenate(f), axis=0) if f else np.empty((0, n)) for f in found]
        return [self._choose(pool, X[k], count, rngs[k]) for k, pool in enumerate(pools)]

    @staticmethod
    def _choose(pool: np.ndarray, x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` candidates drawn at random (as DiCE does), preferring ones that change a different set
        of features from those already drawn: distinct routes to the other decision, which a reviewer learns
        more from than three variations of one, and which raises diversity without favouring distant ones."""
        if len(pool) <= count:
            return pool
        order = rng.permutation(len(pool))
        routes = (np.abs(pool[order] - x) > 1e-12) | (np.isnan(pool[order]) != np.isnan(x))
        taken, seen = [], set()
        for j, route in zip(order, routes):
            key = route.tobytes()
            if key not in seen:
                seen.add(key)
                taken.append(j)
                if len(taken) == count:
                    break
        picked = set(taken)
        rest = [j for j in order if j not in picked]
        return pool[np.sort(np.array(taken + rest[: count - len(taken)]))]

    def _outside(self, X: np.ndarray) -> np.ndarray:
        """(rows, features) mask: the values outside the permitted range of a feature that may vary."""
        mask = np.zeros(X.shape, dtype=bool)
        for i in self.limited:
            kind, a, b = self.samplers[i]
            mask[:, i] = (~np.isin(X[:, i], a) & ~np.isnan(X[:, i]) if kind == "categorical"
                          else (X[:, i] < a) | (X[:, i] > b))
        return mask

    def _sparsify(self, X: np.ndarray, targets: np.ndarray, chosen: list[np.ndarray]) -> list[np.ndarray]:
        """DiCE's binary post-hoc sparsity, for every counterfactual at once.

        Feature by feature, a counterfactual's small changes are moved back to the decision's value if it
        stays valid, else bisected towards it. Unlike DiCE, which can leave the last (invalid) midpoint in
        place, the last valid value is kept, so this step never turns a valid counterfactual invalid.
        """
        owner = np.concatenate([np.full(len(c), k) for k, c in enumerate(chosen)]).astype(np.int64)
        if not len(owner):
            return chosen
        cfs = np.concatenate(chosen)
        query, target = X[owner], targets[owner]
        allowed = ~self._outside(query)  # never move back to a value outside a permitted range
        for i in self.sparsity_order:
            diff = query[:, i] - cfs[:, i]
            todo = np.flatnonzero((diff != 0) & (np.abs(diff) <= self.thresholds[i]) & allowed[:, i])
            if not len(todo):
                continue
            back = self._valid(cfs[todo], i, query[todo, i], target[todo])
            cfs[todo[back], i] = query[todo[back], i]
            todo = todo[~back]
            good, bad = cfs[todo, i].copy(), query[todo, i].copy()
            live = np.ones(len(todo), dtype=bool)
            for _ in range(64):
                mid = np.round((good + bad) / 2, self.decimals[i])
                live &= (mid != good) & (mid != bad)
                if not live.any():
                    break
                at = np.flatnonzero(live)
                ok = self._valid(cfs[todo[at]], i, mid[at], target[todo[at]])
                good[at[ok]] = mid[at[ok]]
                bad[at[~ok]] = mid[at[~ok]]
            cfs[todo, i] = good
        return [cfs[owner == k] for k in range(len(chosen))]

    def _valid(self, rows: np.ndarray, feature: int, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Whether each row, with ``feature`` set to ``values``, is still of its target class."""
        trial = rows.copy()
        trial[:, feature] = values
        return self._reaches(self.model.outputs(trial), targets)

    def _reaches(self, p: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Whether each row's probabilities ``p`` (rows, classes) reach its target: for two classes the target's
        probability at least DiCE's threshold; for more, the target class decided (or, for ``-1 - c``, any class
        but ``c``); for a regression model (``targets`` rows of [low, high]) the score ``p[:, 0]`` in the range."""
        if targets.ndim == 2:
            return (targets[:, 0] <= p[:, 0]) & (p[:, 0] <= targets[:, 1])
        if p.shape[1] == 2:
            return p[np.arange(len(p)), targets] >= self.THRESHOLD
        predicted = p.argmax(axis=1)
        return np.where(targets >= 0, predicted == targets, predicted != -1 - targets)


def _distinct(parts: list[np.ndarray], count: int) -> bool:
    """Whether the rows of ``parts`` hold at least ``count`` distinct rows (as ``np.unique`` counts them), looking
    at the first few rows before all of them."""
    if sum(len(p) for p in parts) < count:
        return False
    rows = np.concatenate(parts)
    return len(np.unique(rows[: 8 * count], axis=0)) >= count or len(np.unique(rows, axis=0)) >= count


def _decimals(column: np.ndarray) -> int:
    """Decimal places of a numeric feature as DiCE infers them: whole numbers 0, else the most digits after
    the point among the column's modes as Python prints them (so a mode of 0.0 counts as one)."""
    if np.all(np.mod(column, 1) == 0):
        return 0
    values, counts = np.unique(column, return_counts=True)
    digits = []
    for mode in values[counts == counts.max()]:
        text = str(float(mode))
        if "e" in text:  # 1e-05: DiCE fails here; write it out
            text = np.format_float_positional(float(mode), unique=True)
        digits.append(len(text.partition(".")[2]))
    return max(1, *digits)
