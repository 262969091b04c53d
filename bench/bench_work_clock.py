"""Which clock counts a heavy job's work (the job stopped past twice its estimate, issue 22):
the job thread's own CPU time, the process's CPU time, or torch's threads x the wall time.

A PCA job of the 5 cats (bundled ViT-S/14, stride 7, the extraction and ``pca_descriptors``) runs
in a second thread, as the demo runs a heavy job in its job thread, at each load size. The
demo counts the process's CPU time / 2 (``vitdense.web.serving.workbudget.WorkMeter``), the unit
that ``bench/bench_work_seconds.py`` fitted the estimate in.

    python bench/bench_work_clock.py        # about 30 s on the 2-core CPU
"""
from __future__ import annotations

import argparse
import threading
import time

import torch

from _common import REPO, machine_line, table

from vitdense.apps.pca import pca_descriptors
from vitdense.features.extractor import Extractor
from vitdense.web.serving.workbudget import process_cpu_seconds

CATS = sorted(str(p) for p in (REPO / "assets/cats").glob("*.jpg"))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()   # --help; no options
    ex = Extractor("dinov2_vits14_imgfocus", device="cpu")
    ex.extract(CATS[:1], layer=11, load_size=112)                     # warm-up
    rows = []
    for load in (224, 336):
        out: dict[str, float] = {}

        def job() -> None:
            t0, c0, w0 = time.thread_time(), process_cpu_seconds(), time.perf_counter()
            pca_descriptors(ex.extract(CATS, layer=11, load_size=load, stride=7), n_components=3)
            out.update(thread=time.thread_time() - t0, process=process_cpu_seconds() - c0,
                       wall=time.perf_counter() - w0)

        t = threading.Thread(target=job)
        t.start()
        t.join()
        n = torch.get_num_threads()
        rows.append([f"PCA, 5 cats, load {load}", f"{out['wall']:.1f}", f"{out['thread']:.1f}",
                     f"{out['process']:.1f}", f"{n * out['wall']:.1f}"])
    print(f"# CPU seconds of a heavy job by clock; {machine_line()}")
    print(table(["job", "wall", "job thread's CPU", "process CPU", "torch threads x wall"], rows))


if __name__ == "__main__":
    main()
