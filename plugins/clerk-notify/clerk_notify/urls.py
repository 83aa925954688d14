"""Apprise URLs as written (maybe holding secret references) and as sent.

A URL is resolved only on the way into apprise. Everything that may reach a message,
an error, the store or a log uses `display_url` (the references as written, never their
values) and is passed through `clerk.secrets.redact` with `Resolved.secrets`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from clerk.secrets import resolve_secrets

# the reference syntax clerk.secrets resolves; found here to learn each value on its own
_REF = re.compile(r"\$\{(?:env|file|credential):[^}]+\}")
_URL_PARTS = re.compile(r"[/?&=#;,]")
MIN_SECRET = 4  # clerk.secrets.redact leaves shorter values alone


@dataclass(frozen=True)
class Resolved:
    url: str
    secrets: tuple[str, ...]  # values to hide wherever text may be shown, longest first


def display_url(raw: str) -> str:
    """What may be shown of a URL: a whole reference as written, else `schema://host`.

    The path, query and credentials of a URL often are the secret (webhook tokens,
    passwords), so they are never shown, even when written literally.
    """
    text = raw.strip()
    refs = _REF.findall(text)
    if refs and not _REF.sub("", text).strip():
        return text  # only references: names, never values
    schema, sep, rest = text.partition("://")
    if not sep or "${" in schema:
        return f"<a URL with {', '.join(refs)}>" if refs else "<not a URL>"
    netloc, tail = _split_netloc(rest)
    host = netloc.rpartition("@")[2]  # never the user:password before it
    if "${" in host:
        host = "…"
    shown = f"{schema}://{host}" + ("/…" if tail else "")
    return f"{shown} (with {', '.join(refs)})" if refs else shown


def resolve(raw: str) -> Resolved:
    """The URL to hand to apprise and the secret values it holds. Raises `SecretError`."""
    url = resolve_secrets(raw.strip())
    pieces: set[str] = set()
    for ref in _REF.findall(raw):
        pieces |= secret_pieces(resolve_secrets(ref))
    if pieces:
        pieces.add(url)
    return Resolved(url, tuple(sorted(pieces, key=len, reverse=True)))


def secret_pieces(value: str) -> set[str]:
    """`value` and, if it is a URL, every part of it a service may echo on its own.

    apprise logs URLs rebuilt (json:// becomes http://) and in pieces (the host, a
    token from the path), so hiding only the whole value would not be enough.
    """
    pieces = {value}
    _, sep, rest = value.partition("://")
    if sep:
        netloc, tail = _split_netloc(rest)
        userinfo, _, hostport = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
        pieces |= {rest, netloc, user, password, host, tail}
        pieces |= set(_URL_PARTS.split(tail))
    pieces |= {unquote(p) for p in pieces}
    return {p for p in pieces if len(p) >= MIN_SECRET}


def _split_netloc(rest: str) -> tuple[str, str]:
    for index, char in enumerate(rest):
        if char in "/?#":
            return rest[:index], rest[index:]
    return rest, ""
