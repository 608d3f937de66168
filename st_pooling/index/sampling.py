"""A uniform random sample of a stream of unknown length, for training IVF/PQ: reservoir sampling (Vitter's
Algorithm R). Every item of the stream ends in the sample with the same probability, whatever the order of the
corpus (a corpus sorted by topic trains a quantiser that covers every topic, not just the first ones)."""
from __future__ import annotations

import numpy as np


class VectorReservoir:
    """Keeps ``size`` rows of the vectors offered so far, each row with probability size / seen."""

    def __init__(self, size: int, dimension: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self._rows = np.zeros((size, dimension), dtype=np.float32)
        self._rng = np.random.default_rng(seed)

    def offer(self, vectors: np.ndarray) -> None:
        """Consider each row of ``vectors`` (in order) for the sample."""
        fill = min(len(vectors), self.size - self.seen) if self.seen < self.size else 0
        self._rows[self.seen:self.seen + fill] = vectors[:fill]
        rest = vectors[fill:]
        if len(rest):
            # item number t (1-based over the whole stream) replaces a uniform slot with probability size / t
            numbers = self.seen + fill + 1 + np.arange(len(rest))
            slots = (self._rng.random(len(rest)) * numbers).astype(np.int64)
            for row, slot in zip(np.flatnonzero(slots < self.size).tolist(), slots[slots < self.size].tolist()):
                self._rows[slot] = rest[row]  # in stream order, as Algorithm R replaces
        self.seen += len(vectors)

    def sample(self) -> np.ndarray:
        """The sample (all rows seen, when fewer than ``size`` were offered)."""
        return self._rows[:min(self.seen, self.size)]
