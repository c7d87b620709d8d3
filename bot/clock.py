"""The real clock (tests inject ``tests.fakes.ManualClock``)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
