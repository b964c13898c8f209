"""Benchmark: exact minibatch OT, end to end from two tensors to the re-paired `x1`, at batch 256 and 1024.

Contenders (all exact; same squared Euclidean cost on flattened samples):
- ours:     `torchebm_nb.couplings.ExactOTCoupling(solver="jv")` (numpy shortest augmenting path, no scipy/POT at run
            time; the default solver="auto" uses scipy when installed, i.e. the next line);
- scipy:    torch cost -> numpy -> `scipy.optimize.linear_sum_assignment` -> index (compiled C++ solver);
- torchcfm: `torchcfm.optimal_transport.OTPlanSampler("exact").sample_plan` (POT's network simplex `ot.emd`, then
            pairs drawn from the plan as torchcfm does).
For reference, our `SinkhornCoupling` at its defaults (reg=0.05, 100 rounds) is timed too.

Data: x0 ~ N(0, I), x1 a mixture of 8 Gaussians (in 2-d; in higher dimensions the first two coordinates carry the
mixture). Protocol: one warm-up, then `--repeats` timed calls per contender on the same inputs; medians reported.
The exact contenders' total costs are compared (they must agree: all three are exact).

    python benchmarks/bench_couplings.py [--dims 2,64] [--sizes 256,1024] [--threads 1] [--repeats 5] [--out PATH]

Needs scipy, torchcfm and pot (benchmark-only; `pip install pot`). Writes benchmarks/results/couplings.json.
"""
import argparse, json, math, os, platform, statistics, time
import numpy as np
import torch
from torchebm_nb.couplings import ExactOTCoupling, SinkhornCoupling


def data(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g)
    angles = torch.randint(0, 8, (n,), generator=g) * (2 * math.pi / 8)
    x1 = 0.3 * torch.randn(n, d, generator=g)
    x1[:, 0] += 4 * angles.cos(); x1[:, 1] += 4 * angles.sin()
    return x0, x1


def median_time(f, repeats):
    f()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def total(x0, x1): return (x0 - x1).flatten(1).square().sum().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="2,64")
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "couplings.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from scipy.optimize import linear_sum_assignment
    from torchcfm.optimal_transport import OTPlanSampler

    ours, sink = ExactOTCoupling(solver="jv"), SinkhornCoupling()  # ours: the dependency-free solver (auto = scipy)
    cfm = OTPlanSampler(method="exact", num_threads=a.threads)
    np.random.seed(0)  # torchcfm draws its pairs with numpy's global RNG

    def scipy_ot(x0, x1):
        c = torch.cdist(x0.flatten(1), x1.flatten(1)).square().double().numpy()
        return x0, x1[torch.from_numpy(linear_sum_assignment(c)[1])]

    rows = []
    print(f"{'d':>4} {'batch':>6} {'ours exact':>11} {'scipy lsa':>10} {'torchcfm':>10} {'ours/scipy':>10} "
          f"{'ours/cfm':>9} {'sinkhorn':>9}  max rel. cost diff")
    for d in (int(s) for s in a.dims.split(",")):
        for n in (int(s) for s in a.sizes.split(",")):
            x0, x1 = data(n, d, seed=n + d)
            t = {"ours": median_time(lambda: ours(x0, x1), a.repeats),
                 "scipy": median_time(lambda: scipy_ot(x0, x1), a.repeats),
                 "torchcfm": median_time(lambda: cfm.sample_plan(x0, x1), a.repeats),
                 "sinkhorn": median_time(lambda: sink(x0, x1, generator=torch.Generator().manual_seed(0)), a.repeats)}
            # the exact plan of POT is a scaled permutation: read it off instead of sampling from it
            pi = cfm.get_map(x0, x1)
            costs = {"ours": total(*ours(x0, x1)), "scipy": total(*scipy_ot(x0, x1)),
                     "torchcfm": total(x0, x1[torch.from_numpy(pi.argmax(1))])}
            diff = max(abs(c - costs["scipy"]) for c in costs.values()) / costs["scipy"]
            rows.append({"d": d, "batch": n, "median_s": t, "total_cost": costs, "max_rel_cost_diff": diff})
            print(f"{d:4d} {n:6d} {1e3 * t['ours']:8.1f} ms {1e3 * t['scipy']:7.1f} ms {1e3 * t['torchcfm']:7.1f} ms "
                  f"{t['ours'] / t['scipy']:10.2f} {t['ours'] / t['torchcfm']:9.2f} {1e3 * t['sinkhorn']:6.1f} ms  {diff:.1e}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"machine": platform.platform(), "torch": torch.__version__, "threads": a.threads,
                   "repeats": a.repeats, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
