"""``python app.py`` as a subprocess on a free loopback port: what the client, browser and
hardening tests and the web benchmarks drive (one place, so they all start the demo alike)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class LocalServer:
    url: str                    # http://127.0.0.1:PORT/
    proc: subprocess.Popen      # the server process (for its RSS, its exit status)
    startup_s: float            # seconds from the start until it answered


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(log_path: Path, *flags: str, env: dict[str, str] | None = None,
              timeout: float = 240.0) -> Iterator[LocalServer]:
    """Run ``app.py --host 127.0.0.1 --port P --offline *flags``; yield once it answers HTTP 200.

    ``env`` adds variables (e.g. ``TMPDIR``) to this process's environment; the server's output
    goes to ``log_path``, whose tail is in the error when it exits or does not answer in time.
    """
    port = free_port()
    full_env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                    PYTHONUNBUFFERED="1",
                    PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    **(env or {}))
    url = f"http://127.0.0.1:{port}/"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1",
                                 "--port", str(port), "--offline", *flags], cwd=REPO, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}:\n"
                                       f"{Path(log_path).read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(url, timeout=5) as r:
                        if r.status == 200:
                            break
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n"
                                       f"{Path(log_path).read_text()[-3000:]}")
                time.sleep(0.5)
            yield LocalServer(url, proc, time.monotonic() - t0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
