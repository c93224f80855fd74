"""Compile bench/loadgen.c (with the TLS modes of loadgen_tls.c, which it includes; OpenSSL)
into the git-ignored bench/out/ when it is missing or stale."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "loadgen.c"
SOURCES = (SOURCE, HERE / "loadgen_tls.c")  # the second is #included by the first
OUT = HERE / "out"
BINARY = OUT / "loadgen"
CFLAGS = ["-O2", "-pthread", "-Wall", "-Wextra"]
LIBS = ["-lssl", "-lcrypto"]  # libssl-dev (make bench-deps)


def build_loadgen(force: bool = False, *, static: bool = False) -> Path:
    """The load generator; ``static``: linked statically, for the backend's container."""
    OUT.mkdir(parents=True, exist_ok=True)
    binary = OUT / "loadgen-static" if static else BINARY
    flags = [*CFLAGS, "-static"] if static else CFLAGS
    fresh = binary.exists() and all(binary.stat().st_mtime >= s.stat().st_mtime for s in SOURCES)
    if fresh and not force:
        return binary
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise SystemExit("bench: no C compiler (gcc) found; run `make bench-deps`")
    tmp = binary.with_suffix(".tmp")
    cmd = [cc, *flags, "-o", str(tmp), str(SOURCE), *LIBS]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise SystemExit(f"bench: compiling loadgen failed:\n{' '.join(cmd)}\n{res.stderr}")
    tmp.replace(binary)
    print(f"bench: built {binary.relative_to(HERE.parent)} ({' '.join(flags)})")
    return binary
