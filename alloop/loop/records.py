"""What the loop records: tag names, the stages of an iteration in order, and each stage's info.

Every finished stage stores its info as JSON in the store's ``stages`` table. The frozen dataclasses
below are that JSON's one definition: the loop writes them, the report and its test fixtures read
them, so renaming a field breaks a test instead of silently emptying a report. Their JSON keys are
the field names, unchanged since the first projects; :meth:`StageInfo.from_json` accepts records
of older projects with keys missing (the field's default) or unknown (ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from alloop.store.tags import INIT_TAG, tag_name  # the one naming rule, re-exported here

# A field with this metadata is left out of the JSON while it is None (a key older projects lack
# in that case, e.g. ``warnings`` when a step imported no label file).
_OPTIONAL: Mapping[str, bool] = {"omit_none": True}

InfoT = TypeVar("InfoT", bound="StageInfo")


@dataclass(frozen=True)
class StageInfo:
    """Base of every stage's info: JSON in and out with the field names as keys."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored for this stage."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls: type[InfoT], data: Mapping[str, Any]) -> InfoT:
        """Parse a stored info; missing keys take the field's default, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RegisterInfo(StageInfo):
    """init: images registered in the pool, and how many could not be read."""

    images: int = 0
    bad: int = 0


@dataclass(frozen=True)
class EmbedInfo(StageInfo):
    """init: the embedder's cache key, images newly embedded, vector dimension."""

    embedder: str | None = None
    computed: int = 0
    dim: int = 0


@dataclass(frozen=True)
class ImportInfo(StageInfo):
    """step: labels stored (new, corrected, unchanged), batch images left waiting, the file read."""

    new: int = 0
    corrected: int = 0
    unchanged: int = 0
    queued_left: int = 0
    source: str | None = None
    # Absent when no label file was read (a step with nothing queued).
    warnings: tuple[str, ...] | None = field(default=None, metadata=_OPTIONAL)
    val: int | None = field(default=None, metadata=_OPTIONAL)

    @property
    def counts(self) -> dict[str, int]:
        """The numbers, by name (what :class:`alloop.loop.StepResult` calls ``imported``)."""
        out = {"new": self.new, "corrected": self.corrected, "unchanged": self.unchanged,
               "queued_left": self.queued_left}
        return out if self.val is None else {**out, "val": self.val}


@dataclass(frozen=True)
class TrainInfo(StageInfo):
    """step: the checkpoint (relative to the project), its run's length and per-epoch history."""

    checkpoint: str | None = None
    epochs: int = 0
    steps: int = 0
    best_metric: float | None = None
    history: tuple[Mapping[str, float], ...] = ()
    resumed_from: str | None = None


@dataclass(frozen=True)
class EvaluateInfo(StageInfo):
    """step: held-out metrics, or ``n_val=0`` alone when nothing was held out."""

    n_val: int | None = field(default=None, metadata=_OPTIONAL)
    map50: float | None = field(default=None, metadata=_OPTIONAL)
    map: float | None = field(default=None, metadata=_OPTIONAL)
    per_class_ap50: Mapping[str, float] | None = field(default=None, metadata=_OPTIONAL)
    per_class_ap: Mapping[str, float] | None = field(default=None, metadata=_OPTIONAL)
    n_val_images: int | None = field(default=None, metadata=_OPTIONAL)
    n_val_boxes: int | None = field(default=None, metadata=_OPTIONAL)
    # per class p^0.6 IoU^0.4 of its held-out boxes' best match (alloop.score.difficulty; the dcus score)
    class_quality: Mapping[str, float] | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True)
class InferInfo(StageInfo):
    """step: pool images predicted, boxes found, the predictions file (relative to the project)."""

    images: int = 0
    boxes: int = 0
    file: str | None = None


@dataclass(frozen=True)
class ScoreInfo(StageInfo):
    """step: the scores computed over the predicted pool."""

    scores: tuple[str, ...] = ()
    images: int = 0


@dataclass(frozen=True)
class SelectInfo(StageInfo):
    """init: the size of the first batch and the method that picked it."""

    selected: int = 0
    method: str | None = None


@dataclass(frozen=True)
class StepSelectInfo(SelectInfo):
    """step: the batch, plus the score, the selector's options and the embedder key it used."""

    score: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    embedder: str | None = None


@dataclass(frozen=True)
class ExportInfo(StageInfo):
    """The batch files written for labeling, one per export format."""

    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportInfo(StageInfo):
    """The report page (relative to the project), None when the report extra is not installed."""

    file: str | None = None


# The stages of init (iteration 0) and of a step, in the order they run, with the info each records.
INIT_STAGE_INFO: Mapping[str, type[StageInfo]] = {
    "register": RegisterInfo, "embed": EmbedInfo, "select": SelectInfo, "export": ExportInfo, "report": ReportInfo,
}
STEP_STAGE_INFO: Mapping[str, type[StageInfo]] = {
    "import": ImportInfo, "train": TrainInfo, "evaluate": EvaluateInfo, "infer": InferInfo, "score": ScoreInfo,
    "select": StepSelectInfo, "export": ExportInfo, "report": ReportInfo,
}
INIT_STAGES = tuple(INIT_STAGE_INFO)
STEP_STAGES = tuple(STEP_STAGE_INFO)


def stage_kinds(iteration: int) -> Mapping[str, type[StageInfo]]:
    """Stage name -> info type of ``iteration``'s stages, in the order they run."""
    return INIT_STAGE_INFO if iteration == 0 else STEP_STAGE_INFO


@dataclass(frozen=True)
class StageRecord:
    """One finished stage as stored: its info (None for a stage this version does not know) and timing."""

    name: str
    info: StageInfo | None
    seconds: float | None
    finished_at: str | None


def read_stages(iteration: int, stored: Mapping[str, Mapping[str, Any]]) -> dict[str, StageRecord]:
    """Parse :meth:`alloop.store.Store.stages` of ``iteration`` into typed records, in run order."""
    kinds = stage_kinds(iteration)
    order = list(kinds)
    records = {
        name: StageRecord(name, kinds[name].from_json(row.get("info") or {}) if name in kinds else None,
                          row.get("seconds"), row.get("finished_at"))
        for name, row in stored.items()
    }
    # Unknown stages (from another version) go last, in the order they finished.
    rank = {name: (order.index(name) if name in order else len(order), r.finished_at or "")
            for name, r in records.items()}
    return dict(sorted(records.items(), key=lambda kv: rank[kv[0]]))


def info_of(records: Mapping[str, StageRecord], name: str, kind: type[InfoT]) -> InfoT | None:
    """The info of stage ``name`` when it finished and is a ``kind``, else None."""
    record = records.get(name)
    return record.info if record is not None and isinstance(record.info, kind) else None


def embedder_of(records: Mapping[str, StageRecord]) -> str | None:
    """The embedder key an iteration's stages used: init's embed stage, or a step's selection."""
    selected = info_of(records, "select", StepSelectInfo)
    embedded = info_of(records, "embed", EmbedInfo)
    return (selected.embedder if selected else None) or (embedded.embedder if embedded else None)


__all__ = [
    "INIT_STAGES",
    "INIT_STAGE_INFO",
    "INIT_TAG",
    "STEP_STAGES",
    "STEP_STAGE_INFO",
    "EmbedInfo",
    "EvaluateInfo",
    "ExportInfo",
    "ImportInfo",
    "InferInfo",
    "RegisterInfo",
    "ReportInfo",
    "ScoreInfo",
    "SelectInfo",
    "StageInfo",
    "StageRecord",
    "StepSelectInfo",
    "TrainInfo",
    "embedder_of",
    "info_of",
    "read_stages",
    "stage_kinds",
    "tag_name",
]
