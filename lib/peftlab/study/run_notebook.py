"""papermill's command line, started faster: `python -m peftlab.study.run_notebook ARGS` runs
`papermill ARGS`.

nbformat validates notebooks with jsonschema, which on import loads every format checker it
finds installed. One of them, `rfc3987_syntax` (the `iri` formats; installed with Jupyter's
`jsonschema[format-nongpl]`), builds about 35 Earley parsers when it is imported: 2.1 s of
papermill's 2.9 s start on 2 CPU cores, paid by every job of a study. No notebook schema uses
those formats, and jsonschema leaves them out when the module cannot be imported.
"""

from __future__ import annotations

import sys


def skip_iri_format_checker() -> None:
    """Make `import rfc3987_syntax` fail in this process (jsonschema then skips the `iri`
    formats); call it before anything imports nbformat or jsonschema."""
    sys.modules.setdefault("rfc3987_syntax", None)


def main(argv: list[str] | None = None) -> None:
    skip_iri_format_checker()
    from papermill.cli import papermill

    papermill.main(args=argv, prog_name="papermill")


if __name__ == "__main__":
    main()
