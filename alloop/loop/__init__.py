"""The active-learning loop: ``init`` and ``step``, stage by stage, each stage recorded.

``init`` = iteration 0: register → embed → select → export → report (:mod:`alloop.loop.init`).
``step`` = iteration n ≥ 1: import → train → evaluate → infer → score → select → export → report
(:mod:`alloop.loop.step`).

Each stage is a function in its own module that returns a frozen info dataclass
(:mod:`alloop.loop.records`); :class:`~alloop.loop.runner.StageRunner` records it in the store in the
same transaction as the stage's own writes. Rerunning an interrupted ``init`` or ``step`` therefore
skips finished stages and redoes only the one that was cut off; ``--restart`` throws the unfinished
iteration away (never its labels) and starts it again.

``--n`` is always the **batch size**: how many new images to select for labeling this round
(not the total labeled count, as in Lightly's ``n_samples``).
"""

from alloop.loop.commands import export, export_training, reembed, reselect
from alloop.loop.init import InitResult, init, is_initialised
from alloop.loop.plan import init_finished
from alloop.loop.records import INIT_STAGES, INIT_TAG, STEP_STAGES, tag_name
from alloop.loop.runner import FAULT_ENV
from alloop.loop.score import REPORT_SCORES
from alloop.loop.step import StepResult, step
from alloop.loop.train import build_trainer

__all__ = [
    "FAULT_ENV", "INIT_STAGES", "INIT_TAG", "REPORT_SCORES", "STEP_STAGES", "InitResult", "StepResult", "build_trainer",
    "export", "export_training", "init", "init_finished", "is_initialised", "reembed", "reselect", "step", "tag_name",
]
