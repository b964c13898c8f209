"""The narrow-operand pass of the compiled CPU blocks: MKL's matrix product by a (K, N) matrix of 2 to 8 columns, row-major
against column-major, and the compiled Langevin loop on an MLP energy with and without the pass, one run.

Both parts on one CPU thread, float32, medians of interleaved repeats:

- `torch.mm(A, B)` for A (M, K) and B (K, N) row-major (B's rows contiguous, as a weight (H, d) is) or column-major
  (the transpose of a contiguous (N, K)), for the shapes of an MLP energy's input gradient;
- unadjusted Langevin (eta = 0.01) on the MLP 2-128-128-1 of bench_compiled.py at 1000 and 10000 chains, compiled
  (`compile=True`, scan blocks) with the pass and with it switched off, time per iteration.

Results: benchmarks/results/narrow_mm.json.
"""
import json
import math
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _single_core import start

ARGS = start(__doc__, "narrow_mm.json")
import torch
torch.set_num_threads(1)
import torchebm_nb.samplers.base as base
from torchebm_nb.core import BaseModel
from torchebm_nb.samplers import LangevinDynamics

def per_call(f, n):
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n

def products():
    rows = []
    for M, K in ((1000, 128), (10_000, 128), (256, 784)):
        A = torch.randn(M, K)
        for N in (1, 2, 4, 8, 16):
            row_major = torch.randn(K, N)
            col_major = row_major.t().contiguous().t()
            fs = {"row_major": lambda: torch.mm(A, row_major), "col_major": lambda: torch.mm(A, col_major)}
            reps = max(3, int(2e7 / (M * K * max(N, 2))))
            for f in fs.values(): per_call(f, 3)
            ts = {k: [] for k in fs}
            for _ in range(ARGS.repeats):
                for k, f in fs.items(): ts[k].append(per_call(f, reps))
            r = {"M": M, "K": K, "N": N, **{f"{k}_s": statistics.median(v) for k, v in ts.items()}}
            rows.append(r)
            print(f"  {M:6d} x {K:4d} @ {K:4d} x {N:2d}: row-major {r['row_major_s'] * 1e6:8.1f} us, "
                  f"column-major {r['col_major_s'] * 1e6:8.1f} us", flush=True)
    return rows

def mlp():
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
                              torch.nn.Linear(128, 1))
    with torch.no_grad():
        for p in net.parameters(): p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return net

def langevin():
    real = base._narrow_pass
    out = {}
    for B, n in ((1000, 100), (10_000, 40)):
        x0 = torch.randn(B, 2, generator=torch.Generator().manual_seed(1))
        ss = {}
        for name, on in (("with_pass", True), ("without_pass", False)):
            base._narrow_pass = real if on else (lambda: None)   # the pass is read when a block is compiled
            ss[name] = LangevinDynamics(BaseModel(network=mlp()), step_size=0.01, compile=True)
            ss[name].sample(x=x0, n_steps=n)
        base._narrow_pass = real
        ts = {k: [] for k in ss}
        for _ in range(ARGS.repeats):
            for k, s in ss.items():
                ts[k].append(per_call(lambda: s.sample(x=x0, n_steps=n, generator=torch.Generator().manual_seed(2)), 1) / n)
        out[str(B)] = {k: statistics.median(v) for k, v in ts.items()}
        r = out[str(B)]
        print(f"  Langevin MLP, {B} chains: with the pass {r['with_pass'] * 1e6:.0f} us/iter, without "
              f"{r['without_pass'] * 1e6:.0f} us/iter ({r['with_pass'] / r['without_pass']:.2f}x)", flush=True)
    return out

def main():
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": ARGS.repeats,
           "mkl": torch.backends.mkl.is_available()}
    print("== matrix products", flush=True)
    res["products"] = products()
    print("== compiled Langevin", flush=True)
    res["langevin"] = langevin()
    pathlib.Path(ARGS.out).write_text(json.dumps(res, indent=1))

if __name__ == "__main__": main()
