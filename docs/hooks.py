"""MkDocs hooks: the reference pages generated from the code (docs/gen_reference.py) join every build as files
of their own, so no copy of them is kept in the repository to drift."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).parent))
import gen_reference  # noqa: E402


def on_files(files, config):
    for relative, text in gen_reference.pages().items():
        files.append(File.generated(config, relative, content=text))
    return files
