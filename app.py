"""Gradio web demo of vitdense (also the Hugging Face Space's entry point).

    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --share

Host and port also come from the usual Gradio variables GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
(flags win). The handlers and the layout live in vitdense/web.py.
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vitdense import web

    web.launch(server_name=args.host, server_port=args.port, share=args.share,
                  concurrency=args.concurrency, device=args.device,
                  online=False if args.offline else None, preload=not args.no_preload)


if __name__ == "__main__":
    main()
