"""The exported training labels as TAO will read them, checked before a run that would train on nothing.

TAO's KITTI reader (``cv/common/dataio/detection_data_sequence.py``) skips, without a word, every
label line with fewer than 9 fields and every line whose lower-cased class is not a key of the
spec's lower-cased ``target_class_mapping``. A mapping that does not match the exported names (a
custom ``spec_template``, say) therefore trains on nothing and still "passes"; alloop counts the
boxes TAO will see per class first and refuses such a run.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from alloop.errors import TrainerError
from alloop.trainers.base import Example

log = logging.getLogger(__name__)

_MAPPING = re.compile(r"target_class_mapping\s*:?\s*\{([^}]*)\}")
_FIELD = re.compile(r'\b(key|value)\s*:\s*"((?:[^"\\]|\\.)*)"')


def class_mapping(spec: str) -> dict[str, str]:
    """The spec's ``target_class_mapping``, keys and values lower-cased as TAO uses them."""
    mapping = {}
    for body in _MAPPING.findall(spec):
        fields = dict(_FIELD.findall(body))
        if "key" in fields and "value" in fields:
            mapping[fields["key"].lower()] = fields["value"].lower()
    return mapping


def boxes_tao_reads(labels_dir: Path, mapping: Mapping[str, str]) -> Counter:
    """Boxes per target class in a KITTI label folder, read with TAO's rules."""
    found: Counter = Counter()
    for path in sorted(labels_dir.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").strip().split("\n"):
            fields = line.strip().split()
            if len(fields) >= 9 and fields[0].lower() in mapping:
                found[mapping[fields[0].lower()]] += 1
    return found


def check_tao_sees_the_labels(spec: str, labels_dir: Path, classes: Sequence[str], tao_names: Sequence[str],
                              train: Sequence[Example], *, spec_file: Path) -> None:
    """Refuse when a class with labeled boxes gets none under the spec's mapping; warn for unlabeled ones."""
    mapping = class_mapping(spec)
    if not mapping:
        raise TrainerError(f"{spec_file}: no target_class_mapping TAO can read; fix the spec_template")
    labeled = Counter(b.label for e in train for b in e.annotation.boxes)
    seen = boxes_tao_reads(labels_dir, mapping)
    for name, tao_name in zip(classes, tao_names):
        if labeled[name] and not seen[tao_name.lower()]:
            raise TrainerError(
                f"class {name!r}: {labeled[name]} labeled box(es), but TAO would read none of them from "
                f"{labels_dir} with the target_class_mapping of {spec_file} (keys {sorted(mapping)}, "
                f"lower-cased as TAO does; the labels say {tao_name!r}) and would train without them; map "
                f'key "{tao_name}" to value "{tao_name}" in your spec_template'
            )
        if not labeled[name]:
            log.warning("tao: class %r has no labeled boxes yet; TAO trains its output without examples",
                        name)
