"""Label Studio, live: push each batch as tasks with pre-annotations, pull the labels back, serve the model.

- :mod:`alloop.labelstudio.client`: the REST calls (URL + API token from $LABEL_STUDIO_URL /
  $LABEL_STUDIO_API_KEY or alloop.toml; the token is never logged);
- :mod:`alloop.labelstudio.sync`: ``push`` the current batch, ``pull`` finished annotations,
  ``step_from_labelstudio`` = pull + ``alloop step``;
- :mod:`alloop.labelstudio.backend`: an ML backend (Label Studio's ``/health``, ``/setup``,
  ``/predict``, ``/webhook`` protocol) serving the current iteration's model as pre-annotations.

Label Studio's exports (JSON, JSON-MIN, COCO, Pascal VOC, YOLO, zipped or not) are read by
:mod:`alloop.formats.labelstudio` like any other label file.
"""

from alloop.labelstudio.client import Client, Connection, LabelStudioError
from alloop.labelstudio.sync import PullResult, PushResult, pull, push, step_from_labelstudio

__all__ = ["Client", "Connection", "LabelStudioError", "PullResult", "PushResult", "pull", "push",
           "step_from_labelstudio"]
