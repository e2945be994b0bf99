"""A per-config rate limiter that learns the CRM's limit from its response headers.

Each request holds a slot from the moment it is sent until one window after its response
arrived. The CRM counts a request when it receives it, which is never later than our response
time, so at most ``max`` slots in use means at most ``max`` requests in any window the CRM sees:
no 429 from our own traffic once the limit is known. Until the first response tells us the
limit, one request at a time is sent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Limit:
    """A request budget: ``max`` requests per ``interval`` seconds."""

    max: int
    interval: float


_CLOSE_RATELIMIT = re.compile(r"(\w+)\s*=\s*([0-9.]+)")


def parse_limit(
    headers: Mapping[str, str], default_interval: float
) -> tuple[Limit | None, int | None, float | None]:
    """(limit, remaining, reset seconds) from HubSpot, Pipedrive or Close rate-limit headers."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        if "x-hubspot-ratelimit-max" in h:
            interval_ms = float(h.get("x-hubspot-ratelimit-interval-milliseconds", "10000"))
            remaining = h.get("x-hubspot-ratelimit-remaining")
            return (
                Limit(int(h["x-hubspot-ratelimit-max"]), interval_ms / 1000.0),
                int(remaining) if remaining is not None else None,
                None,
            )
        if "x-ratelimit-limit" in h:
            reset = float(h["x-ratelimit-reset"]) if "x-ratelimit-reset" in h else None
            remaining = h.get("x-ratelimit-remaining")
            interval = max(default_interval, reset or 0.0)
            return (
                Limit(int(h["x-ratelimit-limit"]), interval),
                int(remaining) if remaining is not None else None,
                reset,
            )
        if "ratelimit" in h:
            fields = {k.lower(): float(v) for k, v in _CLOSE_RATELIMIT.findall(h["ratelimit"])}
            if "limit" in fields:
                reset = fields.get("reset")
                return (
                    Limit(int(fields["limit"]), max(default_interval, reset or 0.0)),
                    int(fields["remaining"]) if "remaining" in fields else None,
                    reset,
                )
    except ValueError:
        return None, None, None
    return None, None, None


class RateLimiter:
    """Slots per rolling window, learned from headers; shared by all pushes of one config."""

    def __init__(self, default_interval: float = 10.0) -> None:
        self.limit: Limit | None = None
        self.default_interval = default_interval
        self._in_flight = 0
        self._released: deque[float] = deque()
        self._blocked_until = 0.0
        self._changed = asyncio.Condition()

    def _free_at(self, now: float) -> float:
        """0 when a request may go now, else the monotonic time a slot frees up."""
        if now < self._blocked_until:
            return self._blocked_until
        if self.limit is None:
            return 0.0 if self._in_flight == 0 else float("inf")
        horizon = now - self.limit.interval
        while self._released and self._released[0] <= horizon:
            self._released.popleft()
        if self._in_flight + len(self._released) < self.limit.max:
            return 0.0
        if self._released:
            return self._released[0] + self.limit.interval
        return float("inf")

    async def acquire(self) -> None:
        """Wait for a slot."""
        async with self._changed:
            while True:
                now = time.monotonic()
                free_at = self._free_at(now)
                if free_at <= now:
                    self._in_flight += 1
                    break
                timeout = None if free_at == float("inf") else free_at - now
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass

    async def release(
        self, headers: Mapping[str, str] | None, retry_after: float | None = None
    ) -> None:
        """Return the slot when the response (or failure) arrived; learn from its headers."""
        async with self._changed:
            now = time.monotonic()
            self._in_flight -= 1
            self._released.append(now)
            if headers is not None:
                limit, remaining, reset = parse_limit(headers, self.default_interval)
                if limit is not None and limit.max > 0:
                    # Pipedrive's and Close's reset counts down as the window rolls: it only
                    # bounds the window length from below, so keep the longest seen.
                    if self.limit is not None and reset is not None and limit.max == self.limit.max:
                        limit.interval = max(limit.interval, self.limit.interval)
                    self.limit = limit
                    # The CRM says the window is full (another runner may share the
                    # account): wait until it says a slot frees.
                    if remaining is not None and remaining <= 0 and reset is not None:
                        self._blocked_until = max(self._blocked_until, now + reset)
            if retry_after is not None:
                self._blocked_until = max(self._blocked_until, now + retry_after)
            self._changed.notify_all()
