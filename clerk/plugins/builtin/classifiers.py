"""The built-in classifier: `stat` attributes (owner, group, mode, links)."""

from __future__ import annotations

import grp
import pwd
import stat
from collections.abc import Callable
from typing import Any

from clerk.plugins.api import Classifier, FileInfo
from clerk.plugins.hookspecs import hookimpl


class StatClassifier(Classifier):
    """`{stat.owner}`, `{stat.group}`, `{stat.mode}` (like "0644") and `{stat.links}`."""

    namespace = "stat"
    attributes = frozenset({"owner", "group", "mode", "links", "uid", "gid"})

    def classify(self, file: FileInfo) -> dict[str, Any]:
        st = file.st
        return {
            "uid": st.st_uid,
            "gid": st.st_gid,
            "owner": _user(st.st_uid),
            "group": _group(st.st_gid),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            "links": st.st_nlink,
        }


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@hookimpl(trylast=True)
def register_classifiers(register: Callable[[Classifier], None]) -> None:
    register(StatClassifier())
