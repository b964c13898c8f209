"""Flow matching benchmarks: quality against torchcfm 1.0.7, and speed against hand-written loops, torchcfm and
upstream TorchEBM 0.8.9.

Quality. Two 2D tasks: N(0, I) -> eight Gaussians (the benchmark mixture: radius 4/sqrt(2), std 0.5/sqrt(2)) and eight
Gaussians -> two moons (scaled by 3, so both clouds have a comparable spread). Each is trained with independent pairs
(I-CFM) and with exact minibatch OT pairs (OT-CFM), by torchebm_nb (`FlowMatchingLoss`) and by torchcfm
(`ConditionalFlowMatcher` / `ExactOptimalTransportConditionalFlowMatcher`, sigma = 0), with the same network
(`TimeConditionedMLP(2, hidden=64, n_layers=3)`, identical initial weights), batch 256, Adam 1e-3 and the same number
of iterations. Samples: 2000 fresh source points pushed through the learned ODE by `FlowSampler` with Euler at
1/2/10/100 steps and with Dopri5 (rtol = atol = 1e-5; its NFE is reported), the same integrators for both libraries.
Score: the exact 2-Wasserstein distance to 2000 held-out target points (optimal assignment by scipy), over three seeds
(mean ± standard error; the two libraries differ only in their random draws, so a difference within a few standard
errors is noise). The floor is the W2 between two exact samples of the same size.
Also reported: path straightness (the mean squared deviation of the Euler-100 velocity from the straight chord
x(1) - x(0): zero for straight paths) and the transport cost E||x(1) - x(0)||^2.

Speed (medians over interleaved rounds, one thread): a training step (batch 256, independent pairs) of
torchebm_nb, a hand-written loop doing the same math, torchcfm, and upstream TorchEBM's FlowMatchingLoss; sampling
with Euler (100 steps, 2000 points) by `FlowSampler` against a hand-written Euler loop.

    python benchmarks/flow_matching.py [--quick] [--iters 3000] [--seeds 0,1,2] [--skip-speed] [--skip-quality]

Writes benchmarks/results/flow_matching.json. Needs scipy and torchcfm (+ pot), torchebm==0.8.9 for the upstream
column (each is benchmark-only; a missing one is reported as n/a).
"""
import argparse, copy, json, math, os, platform, statistics, sys, time, warnings
import numpy as np
import torch

from torchebm_nb.mixture import GaussianMixtureModel
from torchebm_nb.datasets import TwoMoonsDataset
from torchebm_nb.models import TimeConditionedMLP
from torchebm_nb.losses import FlowMatchingLoss
from torchebm_nb.samplers.flow import FlowSampler

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
BATCH, LR, HIDDEN = 256, 1e-3, 64
EULER = (1, 2, 10, 100)
TASKS = ("noise->8gauss", "8gauss->moons")


# --------------------------------------------------------------------------------------------------------------------
# data

MIX = GaussianMixtureModel.ring(8)

def draw_source(task, n, g):
    if task == "noise->8gauss": return torch.randn(n, 2, generator=g)
    return MIX.sample(n, generator=g).float()

def draw_target(task, n, g):
    if task == "noise->8gauss": return MIX.sample(n, generator=g).float()
    return 3 * TwoMoonsDataset(n, noise=0.05, generator=g).data.float()


def make_net(seed):
    torch.manual_seed(seed)  # weight init only: both libraries start from these exact weights
    return TimeConditionedMLP(2, hidden=HIDDEN, n_layers=3)


def w2(a, b):
    "Exact 2-Wasserstein distance between two equal-size point clouds (optimal assignment)."
    from scipy.optimize import linear_sum_assignment
    c = torch.cdist(a.double(), b.double()).square().numpy()
    r, k = linear_sum_assignment(c)
    return float(math.sqrt(c[r, k].mean()))


# --------------------------------------------------------------------------------------------------------------------
# training

def train_ours(task, coupling, iters, seed):
    net = make_net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    g = torch.Generator().manual_seed(1000 + seed)
    loss_fn = FlowMatchingLoss(net, coupling=None if coupling == "independent" else "ot", generator=g)
    for _ in range(iters):
        x1, x0 = draw_target(task, BATCH, g), draw_source(task, BATCH, g)
        opt.zero_grad(set_to_none=True)
        loss_fn(x1, x0=x0).backward()
        opt.step()
    return net


def train_torchcfm(task, coupling, iters, seed):
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher
    net = make_net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    g = torch.Generator().manual_seed(1000 + seed)
    fm = ConditionalFlowMatcher(sigma=0.0) if coupling == "independent" else ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    torch.manual_seed(2000 + seed); np.random.seed(2000 + seed)  # torchcfm draws t (torch) and OT pairs (numpy) globally
    for _ in range(iters):
        x1, x0 = draw_target(task, BATCH, g), draw_source(task, BATCH, g)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        opt.zero_grad(set_to_none=True)
        (net(xt, t) - ut).square().mean().backward()
        opt.step()
    return net


def evaluate(net, task, seed):
    g = torch.Generator().manual_seed(5000 + seed)
    x0, ref = draw_source(task, 2000, g), draw_target(task, 2000, g)
    out = {}
    for k in EULER:
        out[f"euler{k}"] = w2(FlowSampler(net, integrator="euler").sample(x=x0, n_steps=k), ref)
    s5 = FlowSampler(net, integrator=_dopri())
    xs = s5.sample(x=x0)   # nothing recorded, so Dopri5 takes its own steps; s5.nfe counts the model calls
    out["dopri5"], out["dopri5_nfe"] = w2(xs, ref), s5.nfe
    # straightness: mean squared deviation of the velocity along the Euler-100 path from the chord x(1) - x(0)
    x, traj = FlowSampler(net, integrator="euler").sample(x=x0, n_steps=100, return_trajectory=True)
    path = torch.cat([x0[:, None], traj], 1)
    v = (path[:, 1:] - path[:, :-1]) * 100
    chord = (path[:, -1] - path[:, 0])[:, None]
    out["straightness"] = float((v - chord).square().sum(-1).mean())
    out["transport_cost"] = float((path[:, -1] - path[:, 0]).square().sum(-1).mean())
    return out


def _dopri():
    from torchebm_nb.integrators import Dopri5Integrator
    return Dopri5Integrator(rtol=1e-5, atol=1e-5)


def run_quality(iters, seeds, libs):
    rows = []
    for task in TASKS:
        for coupling in ("independent", "ot"):
            for lib in libs:
                for seed in seeds:
                    t0 = time.perf_counter()
                    net = (train_ours if lib == "torchebm_nb" else train_torchcfm)(task, coupling, iters, seed)
                    train_s = time.perf_counter() - t0
                    r = dict(task=task, coupling=coupling, lib=lib, seed=seed, train_s=train_s, **evaluate(net, task, seed))
                    rows.append(r)
                    print(f"{task:14s} {coupling:11s} {lib:11s} seed {seed}: " +
                          " ".join(f"{k}={r[k]:.3f}" for k in ("euler1", "euler2", "euler10", "euler100", "dopri5")) +
                          f" nfe={r['dopri5_nfe']} ({train_s:.0f} s)", flush=True)
    return rows


def summarise_quality(rows):
    keys = [f"euler{k}" for k in EULER] + ["dopri5", "dopri5_nfe", "straightness", "transport_cost"]
    table = []
    for task in TASKS:
        for coupling in ("independent", "ot"):
            for lib in sorted({r["lib"] for r in rows}):
                sel = [r for r in rows if r["task"] == task and r["coupling"] == coupling and r["lib"] == lib]
                if not sel: continue
                se = lambda v: statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
                table.append(dict(task=task, coupling=coupling, lib=lib, n_seeds=len(sel),
                                  **{k: statistics.mean(r[k] for r in sel) for k in keys},
                                  **{k + "_se": se([r[k] for r in sel]) for k in keys}))
    return table


def w2_floor(seeds):
    "W2 between two independent exact samples of 2000 points: the best a perfect model can score on this metric."
    out = {}
    for task in TASKS:
        vals = []
        for seed in seeds:
            g = torch.Generator().manual_seed(7000 + seed)
            vals.append(w2(draw_target(task, 2000, g), draw_target(task, 2000, g)))
        out[task] = statistics.mean(vals)
    return out


def format_quality(table, floor=None):
    "Markdown table: mean W2 ± standard error over seeds, per task, pairing and library."
    head = f"| task | pairs | library | " + " | ".join(f"Euler {k}" for k in EULER) + " | Dopri5 | Dopri5 NFE | straightness |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in table:
        cell = lambda k: f"{r[k]:.3f} ± {r[k + '_se']:.3f}"
        lines.append(f"| {r['task']} | {r['coupling']} | {r['lib']} | " + " | ".join(cell(f"euler{k}") for k in EULER)
                     + f" | {cell('dopri5')} | {r['dopri5_nfe']:.0f} | {r['straightness']:.2f} |")
    if floor: lines += ["", "W2 floor (two exact samples of 2000 points): " + ", ".join(f"{t} {v:.3f}" for t, v in floor.items())]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# speed

def _timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def run_speed(repeats, steps):
    task = "noise->8gauss"
    g = torch.Generator().manual_seed(0)
    batches = [(draw_target(task, BATCH, g), draw_source(task, BATCH, g)) for _ in range(steps)]
    contenders = {}

    net_o = make_net(0); opt_o = torch.optim.Adam(net_o.parameters(), lr=LR)
    loss_o = FlowMatchingLoss(net_o, generator=torch.Generator().manual_seed(1))
    def ours():
        for x1, x0 in batches:
            opt_o.zero_grad(set_to_none=True); loss_o(x1, x0=x0).backward(); opt_o.step()
    contenders["torchebm_nb"] = ours

    net_h = make_net(0); opt_h = torch.optim.Adam(net_h.parameters(), lr=LR); gh = torch.Generator().manual_seed(1)
    def hand():
        for x1, x0 in batches:
            t = torch.rand(x1.shape[0], generator=gh)
            tt = t[:, None]
            xt = tt * x1 + (1 - tt) * x0
            opt_h.zero_grad(set_to_none=True); (net_h(xt, t) - (x1 - x0)).square().mean().backward(); opt_h.step()
    contenders["hand-written"] = hand

    try:
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
        net_c = make_net(0); opt_c = torch.optim.Adam(net_c.parameters(), lr=LR); fm = ConditionalFlowMatcher(sigma=0.0)
        def cfm():
            for x1, x0 in batches:
                t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
                opt_c.zero_grad(set_to_none=True); (net_c(xt, t) - ut).square().mean().backward(); opt_c.step()
        contenders["torchcfm"] = cfm
    except ImportError: pass

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchebm.losses import FlowMatchingLoss as UpFM
            net_u = make_net(0); opt_u = torch.optim.Adam(net_u.parameters(), lr=LR); up = UpFM(net_u)
        def upstream():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for x1, x0 in batches:
                    opt_u.zero_grad(set_to_none=True); up(x1, x0=x0).backward(); opt_u.step()
        contenders["upstream 0.8.9"] = upstream
    except Exception as e: print("upstream TorchEBM not available:", type(e).__name__, e)

    # sampling: FlowSampler Euler vs a hand-written Euler loop, 100 steps, 2000 points
    net_s = make_net(0).eval(); xs0 = draw_source(task, 2000, g)
    sampler = FlowSampler(net_s, integrator="euler")
    def samp_ours(): sampler.sample(x=xs0, n_steps=100)
    def samp_hand():
        with torch.no_grad():
            x, h = xs0.clone(), 1.0 / 100
            t = torch.empty(x.shape[0])
            for k in range(100): x.add_(net_s(x, t.fill_(k * h)), alpha=h)
    sampling = {"FlowSampler Euler-100": samp_ours, "hand-written Euler-100": samp_hand}

    times = {k: [] for k in list(contenders) + list(sampling)}
    for fn in list(contenders.values()) + list(sampling.values()): fn()  # warm-up
    for r in range(repeats):
        order = list(contenders.items()) + list(sampling.items())
        if r % 2: order.reverse()
        for name, fn in order: times[name].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    train = {k: med[k] / steps * 1e3 for k in contenders}
    samp = {k: med[k] * 1e3 for k in sampling}
    return {"train_step_ms": train, "sample_ms": samp,
            "ratio_train_vs_hand": train["torchebm_nb"] / train["hand-written"],
            "ratio_sample_vs_hand": samp["FlowSampler Euler-100"] / samp["hand-written Euler-100"]}


def format_speed(s):
    base = s["train_step_ms"]["torchebm_nb"]
    lines = ["| training step (batch 256) | ms per step | vs torchebm_nb |", "|---|---|---|"]
    for k, v in s["train_step_ms"].items(): lines.append(f"| {k} | {v:.3f} | {v / base:.2f}x |")
    lines += ["", "| sampling (2000 points, 100 Euler steps) | ms |", "|---|---|"]
    for k, v in s["sample_ms"].items(): lines.append(f"| {k} | {v:.1f} |")
    lines += ["", f"library/hand: training {s['ratio_train_vs_hand']:.3f}, sampling {s['ratio_sample_vs_hand']:.3f}"]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes: 600 iterations, one seed, few speed rounds")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--libs", default="torchebm_nb,torchcfm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out", default=os.path.join(RESULTS, "flow_matching.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.quick: a.iters, a.seeds, a.repeats = 600, "0", 5
    seeds = [int(s) for s in a.seeds.split(",")]
    res = {"config": dict(iters=a.iters, seeds=seeds, batch=BATCH, lr=LR, hidden=HIDDEN, threads=a.threads,
                          torch=torch.__version__, python=platform.python_version(), quick=a.quick)}
    if not a.skip_speed:
        res["speed"] = run_speed(a.repeats, a.steps)
        print(format_speed(res["speed"]), flush=True)
    if not a.skip_quality:
        rows = run_quality(a.iters, seeds, a.libs.split(","))
        res["quality_rows"], res["quality"], res["w2_floor"] = rows, summarise_quality(rows), w2_floor(seeds)
        print(format_quality(res["quality"], res["w2_floor"]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f: json.dump(res, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
