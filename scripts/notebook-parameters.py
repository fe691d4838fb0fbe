"""Rewrite each notebook's parameters cell from params/defaults.yaml (its sections, keys and comments):
run it after changing a default or a comment there; tests/test_notebooks.py checks the cells match."""

import json
import sys

from peftlab.config import notebook_parameters_cell
from peftlab.core.paths import repo_root

check = "--check" in sys.argv[1:]
stale = []
for name in ("train", "evaluate"):
    path = repo_root() / "notebooks" / f"{name}.ipynb"
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            wanted = notebook_parameters_cell(name).rstrip("\n").splitlines(keepends=True)
            if cell["source"] != wanted:
                stale.append(str(path))
                cell["source"] = wanted
    if not check:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
if stale:
    print(("stale: " if check else "rewritten: ") + ", ".join(stale))
sys.exit(1 if check and stale else 0)
