"""Find a task by name: ``get_task("SD")``, ``get_task("translate", lang="zh")``, or a custom
task by the path of its YAML: ``get_task("tasks/recipe.yaml")``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from schemas.errors import SyphusError
from syphus.tasks.base import Task

_TASKS: dict[str, tuple[str, str]] = {
    "LA": ("syphus.tasks.la", "LATask"),
    "LACONV": ("syphus.tasks.la", "LACONVTask"),
    "LADD": ("syphus.tasks.la", "LADDTask"),
    "LACR": ("syphus.tasks.la", "LACRTask"),
    "SD": ("syphus.tasks.sd", "SDTask"),
    "CGD": ("syphus.tasks.cgd", "CGDTask"),
    "SN": ("syphus.tasks.sn", "SNTask"),
    "DC": ("syphus.tasks.dc", "DCTask"),
    "TVC": ("syphus.tasks.tvc", "TVCTask"),
    "VST": ("syphus.tasks.vst", "VSTTask"),
    "E4D": ("syphus.tasks.e4d", "E4DTask"),
    "translate": ("syphus.tasks.translate", "TranslateTask"),
    "describe": ("syphus.tasks.describe", "DescribeTask"),
}


def task_names() -> list[str]:
    """Names of the built-in tasks (a custom task is named by its YAML path)."""
    return list(_TASKS)


def get_task(name: str, **options: Any) -> Task:
    """A ready task; unknown names and bad options raise SyphusError naming them."""
    if name.endswith((".yaml", ".yml")) or Path(name).suffix in (".yaml", ".yml"):
        from syphus.tasks.custom import CustomTask

        return CustomTask(Path(name), **options)
    key = next((k for k in _TASKS if k.lower() == name.lower()), None)
    if key is None:
        raise SyphusError(
            f"unknown task '{name}'",
            hint=f"built-in tasks: {', '.join(_TASKS)}; or the path of a custom task YAML",
        )
    module, cls = _TASKS[key]
    return getattr(importlib.import_module(module), cls)(**options)
