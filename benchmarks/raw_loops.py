"""The floors clerk is measured against: the least code that sorts the same tree.

    python raw_loops.py ext  TREE OUT CATEGORIES_JSON
    python raw_loops.py mime TREE OUT CATEGORIES_JSON

`ext`: `os.walk` + `os.rename` by lower-cased extension. `mime`: the same walk with
`magic.Magic(mime=True).from_file` per file and the first category whose glob matches.
No journal, no catalog, no conflict handling: what is left is the unavoidable cost
(walking, renaming, and for `mime` reading and sniffing each file). Run as its own
process so that its wall time and peak RSS are measured like clerk's and organize's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Callable


def ext_classifier(categories: dict[str, list[str]]) -> Callable[[str, str], str | None]:
    by_ext = {ext.lower(): name for name, exts in categories.items() for ext in exts}

    def classify(path: str, filename: str) -> str | None:
        _, dot, ext = filename.rpartition(".")
        return by_ext.get(ext.lower()) if dot else None

    return classify


def mime_classifier(categories: dict[str, list[str]]) -> Callable[[str, str], str | None]:
    import magic

    sniffer = magic.Magic(mime=True)
    globs = [(glob, name) for name, patterns in categories.items() for glob in patterns]

    def classify(path: str, filename: str) -> str | None:
        mime = sniffer.from_file(path)
        for glob, name in globs:
            if fnmatch.fnmatchcase(mime, glob):
                return name
        return None

    return classify


def sort_tree(
    tree: str, out: str, categories: list[str], classify: Callable[[str, str], str | None]
) -> int:
    moved = 0
    for name in categories:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    for dirpath, _dirnames, filenames in os.walk(tree):
        for filename in filenames:
            src = os.path.join(dirpath, filename)
            category = classify(src, filename)
            if category is not None:
                os.rename(src, os.path.join(out, category, filename))
                moved += 1
    return moved


if __name__ == "__main__":
    mode, tree, out, spec = sys.argv[1:5]
    categories: dict[str, list[str]] = json.loads(spec)
    make = ext_classifier if mode == "ext" else mime_classifier
    print(sort_tree(tree, out, list(categories), make(categories)))
