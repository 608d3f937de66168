"""The resumable record of a search: every candidate's curve, status and predictions, in one JSON file.

``state.json`` is rewritten atomically (a temporary file beside it, flushed, then renamed over it) after every
learning-curve point, so an interrupted search loses at most the steps since the last point. A candidate in the
middle of training also has a checkpoint (head, optimizer, schedule, batch order) under ``checkpoints/``, written
the same way, from which it continues exactly; a checkpoint that does not match the state (written just before an
interruption, say) is discarded and that candidate is retrained from its start, which, being seeded, gives the
same curve.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from st_pooling.sweep.space import Candidate, SearchSpace

STATE_VERSION = 2
"""Version 2 counts dev evaluations apart from training and lets each strategy choose its evaluation points."""
STATUSES = ("pending", "running", "paused", "stopped", "finished")


@dataclass
class CandidateRecord:
    """What is known of one candidate: its curve so far, its status, the predictions made for it."""

    id: str
    label: str
    pooling: str
    options: dict[str, Any]
    lr: float
    seed: int
    status: str = "pending"
    steps: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    predictions: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stop_reason: str | None = None
    evaluations: int = 0
    """Dev evaluations run for this candidate (a start shared with an identical untrained head is not one)."""
    eval_seconds: float = 0.0

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateRecord:
        return cls(candidate.id, candidate.label, candidate.pooling, dict(candidate.options), candidate.learning_rate,
                   candidate.seed)

    @property
    def steps_trained(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def final(self) -> float | None:
        """The dev score at the last step, for a candidate trained to the end."""
        return self.scores[-1] if self.status == "finished" else None

    @property
    def last_prediction(self) -> dict[str, float] | None:
        return self.predictions[-1] if self.predictions else None


@dataclass
class SearchState:
    """All candidates' records plus what identifies the search (space fingerprint, strategy and its settings)."""

    fingerprint: str
    strategy: str
    settings: dict[str, Any]
    records: dict[str, CandidateRecord]
    best_id: str | None = None
    version: int = STATE_VERSION

    @classmethod
    def new(cls, space: SearchSpace, strategy: str, settings: dict[str, Any]) -> SearchState:
        return cls(space.fingerprint(), strategy, dict(settings),
                   {candidate.id: CandidateRecord.of(candidate) for candidate in space.candidates})

    def record(self, candidate: Candidate) -> CandidateRecord:
        return self.records[candidate.id]

    def finished(self) -> list[CandidateRecord]:
        return [record for record in self.records.values() if record.status == "finished"]

    @property
    def best(self) -> CandidateRecord | None:
        return self.records[self.best_id] if self.best_id else None

    @property
    def steps_used(self) -> int:
        return sum(record.steps_trained for record in self.records.values())

    @property
    def seconds_used(self) -> float:
        return sum(record.seconds for record in self.records.values())

    @property
    def evaluations_used(self) -> int:
        return sum(record.evaluations for record in self.records.values())

    @property
    def eval_seconds_used(self) -> float:
        return sum(record.eval_seconds for record in self.records.values())

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "fingerprint": self.fingerprint, "strategy": self.strategy,
                "settings": self.settings, "best_id": self.best_id,
                "records": [asdict(record) for record in self.records.values()]}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> SearchState:
        if payload.get("version") != STATE_VERSION:
            raise ValueError(f"it was written by another version of st-pooling sweep (state version "
                             f"{payload.get('version')!r}, this one reads {STATE_VERSION}; its curves were evaluated "
                             "on another schedule)")
        records = {item["id"]: CandidateRecord(**item) for item in payload["records"]}
        for record in records.values():
            if record.status not in STATUSES:
                raise ValueError(f"candidate {record.id} has an unknown status {record.status!r}")
        return cls(payload["fingerprint"], payload["strategy"], payload["settings"], records, payload.get("best_id"))

    def save(self, path: str | Path) -> None:
        """Write atomically: a reader (or a restart) sees the old state or the new one, never half of one."""
        write_json_atomically(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> SearchState:
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(payload)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a readable search state ({error}); move it away to start over") from None


def write_json_atomically(path: str | Path, payload: Any) -> None:
    write_bytes_atomically(path, json.dumps(payload, indent=1).encode("utf-8"))


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """``data`` at ``path``: written beside it, synced, then renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def open_state(path: str | Path, space: SearchSpace, strategy: str, settings: dict[str, Any]) -> tuple[SearchState, bool]:
    """The saved state at ``path`` when it belongs to the same search (resumed=True), else a new one.

    A saved state of another space, strategy or settings raises instead of being overwritten: the user's finished
    candidates are never thrown away silently.
    """
    path = Path(path)
    if not path.exists():
        return SearchState.new(space, strategy, settings), False
    state = SearchState.load(path)
    settings = json.loads(json.dumps(settings))
    differences = []
    if state.fingerprint != space.fingerprint():
        differences.append("the search space (data, budget or candidates)")
    if state.strategy != strategy:
        differences.append(f"the strategy ({state.strategy!r} saved, {strategy!r} asked)")
    if state.settings != settings:
        differences.append(f"the strategy settings ({state.settings} saved, {settings} asked)")
    if differences:
        raise ValueError(f"{path} holds a search that differs in {'; '.join(differences)}: resume it with the same "
                         "space and settings, or choose another output folder")
    return state, True
