"""Where the daemon spends its time: py-spy sampling a running daemon (``--py-spy PATH``),
summarised as the functions with the most samples, on their own and with what they call."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench import procs

RATE = 200  # samples per second


class Profiler:
    """``py-spy record`` on ``pid`` until ``stop()``; raw (collapsed) stacks into ``out``."""

    def __init__(self, py_spy: str, pid: int, out: Path) -> None:
        self.out = out
        out.unlink(missing_ok=True)
        argv = [py_spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
        argv += ["--nonblocking", "--output", str(out)]
        self.proc = procs.spawn(argv, log=out.with_suffix(".log"))

    def stop(self) -> Path:
        """Stop sampling (SIGINT: py-spy writes its output), then summarise beside it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        procs.stop(self.proc, grace=2.0)
        summary = self.out.with_suffix(".summary.txt")
        if self.out.exists():
            summary.write_text(summarize(self.out))
        return summary


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``; keeps frames per function."""
    name, _, where = frame.partition(" (")
    module = where.rsplit(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(module[-2:])})" if where else name


def summarize(raw: Path, top: int = 30) -> str:
    """The ``top`` functions by own samples and by samples with their callees."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} samples at {RATE}/s ({total / RATE:.1f} s of sampled time)", "", "own:"]
    lines += [f"{100 * c / max(total, 1):5.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "with callees:"]
    lines += [f"{100 * c / max(total, 1):5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
