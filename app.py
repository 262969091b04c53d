"""Gradio web demo of vitdense (also the Hugging Face Space's entry point).

    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --share

Host and port also come from the usual Gradio variables GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
(flags win). The handlers and the layout live in vitdense/web/ (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import argparse
import logging
import os

try:  # Hugging Face ZeroGPU Spaces: `spaces` must be imported before torch sets up CUDA
    import spaces  # noqa: F401
except ImportError:  # everywhere else the app runs without it
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=None,
                   help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--concurrency", type=int,
                   default=int(os.environ.get("GRADIO_DEFAULT_CONCURRENCY_LIMIT", "1")),
                   help="network jobs run at once (queued beyond that); clicks are never queued")
    p.add_argument("--offline", action="store_true",
                   help="offer only models whose weights are on disk (no hub probe)")
    p.add_argument("--no-preload", action="store_true",
                   help="load the bundled model on the first request instead of at start")
    g = p.add_argument_group("limits of a shared server (README 'Limits of the public demo')")
    g.add_argument("--session-memory", default=None,
                   help="memory for all visitors' results and the running job's working memory, "
                        "e.g. 4GiB (default: $VITDENSE_SESSION_MEMORY or 4GiB); least recently used "
                        "results go first")
    g.add_argument("--cache-memory", default=None,
                   help="memory for the descriptors of recently extracted images (a re-run, e.g. of "
                        "an example, is then instant), e.g. 512MiB (default 512MiB)")
    g.add_argument("--idle-minutes", type=float, default=None,
                   help="a visitor's results are dropped after this many minutes unused (default 20)")
    g.add_argument("--max-seconds", default=None,
                   help="refuse a request whose estimated time on a 2-vCPU CPU is above this many seconds "
                        "(default: $VITDENSE_MAX_SECONDS, else 60 on CPU, none with CUDA); 'inf' for no limit")
    g.add_argument("--overrun-factor", default=None,
                   help="stop a running job (between its steps, with a sentence) once its work, the "
                        "process's CPU seconds / 2, passes this many times its estimate (default 2 on "
                        "CPU, never with CUDA); 'inf' never stops one")
    g.add_argument("--max-hold", default=None,
                   help="stop a running job once it has kept the demo this many wall seconds while "
                        "another visitor's job waits, or its own allowance (--overrun-factor x its "
                        "estimate) if longer (default 60); 'inf' never stops one for that")
    g.add_argument("--seconds-scale", default=None,
                   help="this machine's seconds per estimated second of the 2-vCPU Space (default 1), "
                        "for --max-seconds and --overrun-factor on slower or faster CPUs")
    g.add_argument("--max-work", default=None,
                   help="work limit of one request in units of tokens^2 x blocks (default: "
                        "$VITDENSE_MAX_WORK, else none on CPU (--max-seconds rules), 2e11 with CUDA); "
                        "'inf' for no limit")
    g.add_argument("--max-waiting", type=int, default=None,
                   help="heavy jobs that may wait for their turn (default 4); more are told 'busy'")
    g.add_argument("--max-wait", type=float, default=None,
                   help="seconds a heavy job waits at most for its turn while the queue does not move (a job "
                        "ahead starting counts again from 0; default 120)")
    g.add_argument("--click-rate", type=float, default=None,
                   help="clicks (events that are not heavy jobs) per second per visitor (default 20); "
                        "faster ones are told to slow down")
    g.add_argument("--proxy-hops", type=int, default=None,
                   help="trusted proxies in front of the app: a visitor's address is the X-Forwarded-For "
                        "entry this far from the right (default: 1 on a Hugging Face Space ($SPACE_ID), "
                        "else 0: the connection's peer); each address has one heavy job at a time")
    g.add_argument("--queue-size", type=int, default=None,
                   help="events (clicks included) that may wait in Gradio's queue (default 64); "
                        "more are told the demo is receiving too many requests")
    g.add_argument("--temp-max-age", type=float, default=None,
                   help="seconds after which uploads, outputs and downloads are deleted (default 1800)")
    g.add_argument("--temp-max-disk", default=None,
                   help="disk for uploads, outputs and downloads together, e.g. 2GiB (default 2GiB); "
                        "above it the oldest go first, never one younger than 30 s")
    return p.parse_args(argv)


def limits(args: argparse.Namespace) -> dict:
    """The flags of the limits group -> keyword arguments of vitdense.web.serving.limits.Limits."""
    from vitdense.web.serving.results import parse_bytes
    from vitdense.web.serving.workbudget import parse_work
    out = dict(session_bytes=None if args.session_memory is None else parse_bytes(args.session_memory),
               cache_bytes=None if args.cache_memory is None else parse_bytes(args.cache_memory),
               idle_s=None if args.idle_minutes is None else 60.0 * args.idle_minutes,
               max_work=None if args.max_work is None else parse_work(args.max_work),
               max_seconds=None if args.max_seconds is None else parse_work(args.max_seconds, "max seconds"),
               overrun=None if args.overrun_factor is None else parse_work(args.overrun_factor, "overrun factor"),
               hold_s=None if args.max_hold is None else parse_work(args.max_hold, "max hold"),
               seconds_scale=None if args.seconds_scale is None else parse_work(args.seconds_scale, "seconds scale"),
               click_rate=args.click_rate, proxy_hops=args.proxy_hops,
               max_waiting=args.max_waiting, max_wait_s=args.max_wait, queue_size=args.queue_size,
               temp_max_age_s=args.temp_max_age,
               temp_max_bytes=None if args.temp_max_disk is None else parse_bytes(args.temp_max_disk))
    if args.temp_max_age is not None:
        out["temp_every_s"] = max(1.0, min(300.0, args.temp_max_age / 4))
    return {k: v for k, v in out.items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vitdense import web

    web.launch(server_name=args.host, server_port=args.port, share=args.share,
                  concurrency=args.concurrency, device=args.device,
                  online=False if args.offline else None, preload=not args.no_preload,
                  limits=limits(args))


if __name__ == "__main__":
    main()
