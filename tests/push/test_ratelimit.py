"""The limiter keeps the window it learned: a reset that counts down as the window rolls
must not shrink it (that sent bursts Pipedrive and Close refused with 429)."""

from __future__ import annotations

import asyncio

import pytest

from agency_crm.push.ratelimit import RateLimiter


@pytest.mark.parametrize(
    ("headers", "default"),
    [
        (
            {
                "x-ratelimit-limit": "100",
                "x-ratelimit-remaining": "{r}",
                "x-ratelimit-reset": "{s}",
            },
            2.0,
        ),
        ({"RateLimit": "limit=100, remaining={r}, reset={s}"}, 1.0),
    ],
    ids=["pipedrive", "close"],
)
def test_a_shorter_reset_later_does_not_shrink_the_window(
    headers: dict[str, str], default: float
) -> None:
    async def scenario() -> tuple[float, float]:
        limiter = RateLimiter(default)
        for remaining, reset in ((99, 10), (50, 1)):
            await limiter.acquire()
            await limiter.release({k: v.format(r=remaining, s=reset) for k, v in headers.items()})
            assert limiter.limit is not None
            if reset == 10:
                first = limiter.limit.interval
        return first, limiter.limit.interval

    first, later = asyncio.run(scenario())
    assert first == 10.0
    assert later == 10.0


def test_hubspot_headers_give_max_and_interval() -> None:
    async def scenario() -> tuple[int, float]:
        limiter = RateLimiter(10.0)
        await limiter.acquire()
        await limiter.release(
            {
                "X-HubSpot-RateLimit-Max": "190",
                "X-HubSpot-RateLimit-Remaining": "189",
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            }
        )
        assert limiter.limit is not None
        return limiter.limit.max, limiter.limit.interval

    assert asyncio.run(scenario()) == (190, 10.0)
