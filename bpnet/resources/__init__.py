"""The shipped specs and configs, as package data (so a wheel or Docker install has them).

``bpnet/resources/specs``, ``data_pose_config`` and ``model_pose_config`` are the files; the project
root's ``specs/``, ``data_pose_config/`` and ``model_pose_config/`` are symlinks to them, so relative
paths inside the specs (``../model_pose_config/...``) resolve the same way from either place.
"""

from importlib import resources
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """The installed path of a shipped file, e.g. ``resource_path("specs", "quickstart_train.yaml")``."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
