"""An image-edit burst: the bot process's memory (RSS) before, at the peak of and after concurrent edits of a
huge image, with the edits in worker processes (``bot.skills.image_pool``, what the bot does) and, for
comparison in the same run, on threads of the bot's own process (what it did before).

    python bench/image_burst.py [--edits 6] [--side 6300] [--workers 2] [--memory-mb 1024] [--rounds 1]

Each mode runs in a fresh Python process (so each starts from the same baseline): it imports the image code,
does one small edit to warm up, notes its RSS, then runs ``--edits`` black-and-white edits of a
``--side`` x ``--side`` PNG at once, ``--rounds`` times, sampling its RSS every 20 ms. Printed per mode: RSS
at the baseline, at the peak and 2 s after the last burst (the figure that matters: what the bot keeps), and
for the pool the peak RSS of its processes together (the forkserver and the workers, which exit after their
job).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants_rss_mb() -> float:
    """RSS of every process below this one (the pool's forkserver and its workers)."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(proc.name)] = int(stat[1])
            rss[int(proc.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            continue
    mine, total = {os.getpid()}, 0.0
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                total += rss.get(pid, 0.0)
                changed = True
    return total


def make_png(side: int, path: Path) -> None:
    """A photo-like PNG: smooth colour gradients with fine grain (a few MB, like a big camera picture)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rng = np.random.default_rng(7)
    grain = rng.integers(0, 4, size=(side, side), dtype=np.uint8)
    r = (x * 200 + grain).astype(np.uint8)
    g = (y * 200 + grain).astype(np.uint8)
    b = ((x + y) * 100 + grain).astype(np.uint8)
    Image.fromarray(np.dstack([r, g, b]), "RGB").save(path, "PNG", compress_level=6)


async def burst(data: bytes, edits: int, rounds: int, workers: int, memory_mb: int) -> dict[str, float]:
    from bot.skills.image_ops import EditRequest, apply_edit
    from bot.skills.image_pool import ImagePool

    pool = ImagePool(workers=workers, memory_mb=memory_mb)
    small = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (64, 64), (10, 20, 30)).save(small, "PNG")
    await pool.run(apply_edit, small.getvalue(), EditRequest("grayscale"))  # warm up (imports, first worker)
    await asyncio.sleep(1.0)
    base = rss_mb()
    peak, workers_peak = base, 0.0
    sampling = True

    async def sample() -> None:
        nonlocal peak, workers_peak
        while sampling:
            peak = max(peak, rss_mb())
            workers_peak = max(workers_peak, descendants_rss_mb())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    outcomes: list[str] = []
    for _ in range(rounds):
        results = await asyncio.gather(
            *(pool.run(apply_edit, data, EditRequest("grayscale")) for _ in range(edits)), return_exceptions=True
        )
        outcomes += ["ok" if not isinstance(r, BaseException) else type(r).__name__ for r in results]
        del results  # the edited images went out to the chat: the bot keeps nothing of them
    took = time.monotonic() - t0
    gc.collect()
    await asyncio.sleep(2.0)
    sampling = False
    await sampler
    after = rss_mb()
    await pool.stop()
    return {"base": base, "peak": peak, "after": after, "seconds": took, "child_peak": workers_peak,
            "ok": outcomes.count("ok"), "failed": len(outcomes) - outcomes.count("ok")}


def child(args: argparse.Namespace) -> None:
    data = Path(args.png).read_bytes()
    workers = args.workers if args.mode == "pool" else 0
    print(json.dumps(asyncio.run(burst(data, args.edits, args.rounds, workers, args.memory_mb))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edits", type=int, default=6)
    ap.add_argument("--side", type=int, default=6300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--mode", choices=["pool", "thread"], help=argparse.SUPPRESS)
    ap.add_argument("--png", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="paibot-image-burst-") as tmp:
        png = Path(tmp) / "big.png"
        make_png(args.side, png)
        size = png.stat().st_size
        print(f"{args.rounds} bursts of {args.edits} black-and-white edits at once of a {args.side}x{args.side} "
              f"PNG ({size / 1e6:.1f} MB); pool: {args.workers} workers of at most {args.memory_mb} MB")
        print(f"{'mode':<8} {'baseline':>9} {'peak':>9} {'after':>9} {'kept':>9} {'workers peak':>13} {'edits':>8}"
              f" {'time':>7}")
        for mode in ("thread", "pool"):
            out = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--png", str(png), "--edits", str(args.edits),
                 "--rounds", str(args.rounds), "--workers", str(args.workers), "--memory-mb", str(args.memory_mb)],
                capture_output=True, text=True, cwd=str(ROOT), env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            if out.returncode != 0:
                print(f"{mode}: failed\n{out.stderr}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            worker = f"{r['child_peak']:.0f} MB" if mode == "pool" else "-"
            print(f"{mode:<8} {r['base']:>6.0f} MB {r['peak']:>6.0f} MB {r['after']:>6.0f} MB "
                  f"{r['after'] - r['base']:>+6.0f} MB {worker:>13} {r['ok']:>3} ok {r['failed']:>2}x {r['seconds']:>5.1f} s")


if __name__ == "__main__":
    main()
