"""Named crash points for the crash test: with ``AGENCY_CRM_CRASH_AT`` set, the runner kills
itself with SIGKILL the ``AGENCY_CRM_CRASH_AFTER``-th time it reaches that point.

Points: ``after_claim`` (pushes claimed, nothing sent), ``after_send`` (a write request is on
the wire, its response not yet read), ``after_2xx`` (the CRM answered a write with success,
before we stored anything), ``after_commit`` (a push's outcome committed). Unset, every hook is
a no-op.
"""

from __future__ import annotations

import asyncio
import os
import signal

POINTS = ("after_claim", "after_send", "after_2xx", "after_commit")
_AT = os.environ.get("AGENCY_CRM_CRASH_AT") or None
_AFTER = int(os.environ.get("AGENCY_CRM_CRASH_AFTER") or "1")
_SEND_DELAY = float(os.environ.get("AGENCY_CRM_CRASH_SEND_DELAY") or "0.005")
_seen = 0


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def reached(point: str) -> None:
    """Crash here if this is the armed point and its turn has come."""
    global _seen
    if _AT != point:
        return
    _seen += 1
    if _seen >= _AFTER:
        _kill()


def arm_send() -> None:
    """Before a write request goes out: crash shortly after it is sent, if armed."""
    global _seen
    if _AT != "after_send":
        return
    _seen += 1
    if _seen >= _AFTER:
        asyncio.get_running_loop().call_later(_SEND_DELAY, _kill)
