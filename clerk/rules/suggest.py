""" "Did you mean" for names a user misspelt: keys, filters, actions, roots, executors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

# Small candidate lists are short enough to print in full when nothing is close.
_LIST_ALL_UP_TO = 16
_LONGEST_WORD = 100


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely meant, or None.

    Case is ignored first (`Extension` -> `extension`), then difflib's ratio decides.
    """
    choices = [c for c in candidates if isinstance(c, str)]
    if len(word) > _LONGEST_WORD:  # no one misspells a name into a paragraph
        return None
    folded = {c.casefold(): c for c in choices}
    if word.casefold() in folded:
        return folded[word.casefold()]
    found = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[found[0]] if found else None


def hint(word: object, candidates: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """`" (did you mean 'x'?)"`, else `" (expected one of: a, b)"` for short lists, else ``""``.

    `aliases` maps words from other tools (organize's `filters`) to ours (`match`).
    """
    choices = sorted({c for c in candidates if isinstance(c, str)})
    if isinstance(word, str):
        alias = (aliases or {}).get(word.casefold())
        guess = alias if alias in choices else close_match(word, choices)
        if guess is not None and guess != word:
            return f" (did you mean {guess!r}?)"
    if choices and len(choices) <= _LIST_ALL_UP_TO:
        return f" (expected one of: {', '.join(choices)})"
    return ""


def unknown(
    kind: str, word: object, candidates: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str:
    """`"unknown filter 'extention' (did you mean 'extension'?)"`."""
    return f"unknown {kind} {_show(word)}{hint(word, candidates, aliases)}"


def _show(word: object) -> str:
    from clerk.yamlsrc import brief

    if isinstance(word, str):
        return brief(word)
    kind = next(c.__name__ for c in type(word).__mro__ if c.__module__ == "builtins")
    return f"{brief(word)} ({kind})"  # (list), not (YamlSeq)
