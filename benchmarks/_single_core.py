"""The common start of the single-core benchmark scripts: the repository importable, `--repeats` and `--out` parsed, and
the process pinned to one CPU core with one intra-op thread (set before torch is imported)."""
import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

def start(doc:str, result:str, repeats:int=7):
    "Parse the arguments of a script documented by `doc` that writes benchmarks/results/`result`; pin the process to one core."
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--repeats", type=int, default=repeats, help="interleaved repeats (medians over them)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results" / result))
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"): os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return args
