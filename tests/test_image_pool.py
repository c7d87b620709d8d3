"""Image work runs in worker processes with a memory ceiling (bot.skills.image_pool): the bot's own process
never decodes an image, an image that needs more memory than a worker may use is refused with a short
reason, and a worker that dies costs only its job."""

from __future__ import annotations

import io
import os

import pytest

from bot.skills.image_ops import EditRequest, ImageRejected, apply_edit
from bot.skills.image_pool import ImagePool


def png(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (width, height))
    img.putdata([(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def worker_pid() -> int:
    return os.getpid()


def allocate(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


def die() -> None:
    os._exit(3)


@pytest.fixture
async def pool():
    p = ImagePool(workers=2, memory_mb=256)
    yield p
    await p.stop()


async def test_an_edit_in_the_pool_is_the_edit_in_the_process(pool):
    data = png()
    for req in (EditRequest("grayscale"), EditRequest("rotate", {"degrees": 90}), EditRequest("crop")):
        assert await pool.run(apply_edit, data, req) == apply_edit(data, req)


async def test_jobs_run_in_other_processes_one_each(pool):
    pids = [await pool.run(worker_pid) for _ in range(3)]
    assert os.getpid() not in pids
    assert len(set(pids)) == 3  # a worker does one job and exits: its memory goes back to the system


async def test_a_job_past_the_memory_ceiling_is_refused_with_a_reason(pool):
    assert await pool.run(allocate, 16) == 16 * 1024 * 1024
    with pytest.raises(ImageRejected) as info:
        await pool.run(allocate, 512)
    assert "too large" in str(info.value)
    assert await pool.run(allocate, 16) == 16 * 1024 * 1024  # the next job is fine


async def test_a_dying_worker_costs_only_its_job(pool):
    with pytest.raises(ImageRejected):
        await pool.run(die)
    assert await pool.run(worker_pid) != os.getpid()


async def test_an_unreadable_image_is_refused_from_the_worker(pool):
    with pytest.raises(ImageRejected) as info:
        await pool.run(apply_edit, b"not an image", EditRequest("grayscale"))
    assert "not a readable image" in str(info.value)
