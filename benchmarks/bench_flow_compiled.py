"""The flow sampler's compiled loop (`FlowSampler(..., compile=True)`) beside its eager loop and a hand-written RK4 loop, one run.

A 2-D velocity field `TimeConditionedMLP(2)` (width 128, 3 hidden layers, random weights), float32 on the CPU, one
thread, the process pinned to one core, timed interleaved (medians of repeats):

- the probability-flow ODE with RK4 (50 steps) at 256 and 4096 samples: a hand-written loop (the four stages with
  plain tensor arithmetic, what one would write without a library), our eager `FlowSampler`, our compiled one;
- the reverse-time SDE with Euler-Maruyama (100 steps, `sample_eps=0.05`) at the same sizes: our eager and compiled loops.

Reports time per integration step, the compile time (first call) and the break-even number of steps. Results:
benchmarks/results/flow_compiled.json.
"""
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _single_core import start

ARGS = start(__doc__, "flow_compiled.json")
import torch
torch.set_num_threads(1)
from torchebm_nb.models import TimeConditionedMLP
from torchebm_nb.samplers import FlowSampler

def field():
    torch.manual_seed(0)
    return TimeConditionedMLP(2).eval().requires_grad_(False)

def hand_rk4(f, n):
    "RK4 from t = 0 to 1 in n steps, written out."
    def run(x):
        h = 1.0 / n
        with torch.no_grad():
            for i in range(n):
                t = torch.full((x.shape[0],), i * h)
                k1 = f(x, t); k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
                k3 = f(x + 0.5 * h * k2, t + 0.5 * h); k4 = f(x + h * k3, t + h)
                x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x
    return run

def case(name, n, impls, B):
    x0 = torch.randn(B, 2, generator=torch.Generator().manual_seed(1))
    first = {}
    for k, f in impls.items():
        t = time.perf_counter(); f(x0); first[k] = time.perf_counter() - t
    ts = {k: [] for k in impls}
    for _ in range(ARGS.repeats):
        for k, f in impls.items():
            t = time.perf_counter(); f(x0); ts[k].append((time.perf_counter() - t) / n)
    res = {"steps": n, "samples": B}
    for k in impls: res[k] = {"per_step_s": statistics.median(ts[k]), "first_call_s": first[k]}
    if "compiled" in res and "eager" in res:
        c, e = res["compiled"], res["eager"]
        c["compile_s"] = max(0.0, c["first_call_s"] - c["per_step_s"] * n)
        gain = e["per_step_s"] - c["per_step_s"]
        res["break_even_steps"] = c["compile_s"] / gain if gain > 0 else None
    print(f"== {name}: " + ", ".join(f"{k} {res[k]['per_step_s'] * 1e6:.0f} us/step" for k in impls)
          + (f"; compile {res['compiled']['compile_s']:.1f} s, break-even {res['break_even_steps']:.0f} steps"
             if res.get("break_even_steps") else ""), flush=True)
    return res

def main():
    f = field()
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": ARGS.repeats, "cases": {}}
    for B in (256, 4096):
        n = 50
        eager, comp = FlowSampler(f, integrator="rk4"), FlowSampler(f, integrator="rk4", compile=True)
        res["cases"][f"ode_rk4_{B}"] = case(f"ODE, RK4, {B} samples", n, {
            "hand_written": hand_rk4(f, n), "eager": lambda x: eager.sample(x=x, n_steps=n),
            "compiled": lambda x: comp.sample(x=x, n_steps=n)}, B)
        n = 100
        eager = FlowSampler(f, mode="sde", sample_eps=0.05)
        comp = FlowSampler(f, mode="sde", sample_eps=0.05, compile=True)
        res["cases"][f"sde_em_{B}"] = case(f"SDE, Euler-Maruyama, {B} samples", n, {
            "eager": lambda x: eager.sample(x=x, n_steps=n, generator=torch.Generator().manual_seed(2)),
            "compiled": lambda x: comp.sample(x=x, n_steps=n, generator=torch.Generator().manual_seed(2))}, B)
    pathlib.Path(ARGS.out).write_text(json.dumps(res, indent=1))

if __name__ == "__main__": main()
