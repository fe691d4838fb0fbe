"""The evaluation tasks: one module each, registered in `peftlab.tasks.registry.TASKS`.

Importing the package imports every module in this folder, so each task module registers its
task: adding a task is one new module (and its test and data), nothing else.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
