"""Benchmark: a CD-10 training step and a DSM training step of `torchebm_nb.losses` against hand-written PyTorch
steps doing the same math, for an MLP energy 2-128-128-1 (SiLU), batch 256.

Protocol: identical initial weights, warm-up, then `--repeats` rounds; each round runs `--steps` library steps and
`--steps` hand-written steps interleaved one by one (alternating which goes first, so load drift hits both alike),
each timed on its own (with a device synchronisation on CUDA). Reported: the median per-step time of each
over the rounds, and their ratio (library / hand-written; the target is <= 1.05).

    python benchmarks/bench_losses.py [--device cpu|cuda] [--threads N] [--repeats 11] [--steps 60]

Writes benchmarks/results/losses.json.
"""
import argparse, copy, json, math, os, platform, statistics, time
import torch
import torch.nn as nn
from torchebm_nb.core import BaseModel
from torchebm_nb.samplers import LangevinDynamics
from torchebm_nb.losses import ContrastiveDivergence, DenoisingScoreMatching

B, D, K, ETA, SIGMA = 256, 2, 10, 0.01, 0.1


def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 1))


def hand_cd_step(net, opt, x, gen, noise):
    "CD-10 by hand: N(0, I) init, k in-place Langevin steps without a graph, then mean E(x+) - mean E(x-)."
    xn = torch.randn(x.shape, generator=gen, device=x.device)
    c = math.sqrt(2 * ETA)
    for _ in range(K):
        with torch.enable_grad():
            xg = xn.detach().requires_grad_(True)
            g, = torch.autograd.grad(net(xg).sum(), xg)
        xn.add_(g, alpha=-ETA).add_(noise.normal_(generator=gen), alpha=c)
    opt.zero_grad(set_to_none=True)
    loss = net(x).mean() - net(xn).mean()
    loss.backward()
    opt.step()
    return loss


def hand_dsm_step(net, opt, x, gen):
    "DSM by hand: 1/2 E|grad E(x~) - eps/sigma|^2 with x~ = x + sigma eps."
    eps = torch.randn(x.shape, generator=gen, device=x.device)
    xt = (x + SIGMA * eps).requires_grad_(True)
    g, = torch.autograd.grad(net(xt).sum(), xt, create_graph=True)
    loss = 0.5 * (g - eps / SIGMA).square().sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def lib_step(loss_fn, opt, x):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(x)
    loss.backward()
    opt.step()
    return loss


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def bench(name, lib_fn, hand_fn, steps, repeats, device):
    "Per round: `steps` library and `steps` hand-written steps, interleaved one by one (alternating which goes first)."
    for _ in range(5): lib_fn(); hand_fn()  # warm-up
    lib_t, hand_t = [], []
    for r in range(repeats):
        tl = th = 0.0
        for i in range(steps):
            for fn in ((lib_fn, hand_fn) if (i + r) % 2 == 0 else (hand_fn, lib_fn)):
                sync(device)
                t = time.perf_counter(); fn(); sync(device)
                dt = time.perf_counter() - t
                if fn is lib_fn: tl += dt
                else: th += dt
        lib_t.append(tl / steps); hand_t.append(th / steps)
    lib_ms, hand_ms = 1e3 * statistics.median(lib_t), 1e3 * statistics.median(hand_t)
    return {"step": name, "library_ms": round(lib_ms, 4), "hand_written_ms": round(hand_ms, 4),
            "ratio": round(lib_ms / hand_ms, 4), "library_all_ms": [round(1e3 * v, 4) for v in lib_t],
            "hand_written_all_ms": [round(1e3 * v, 4) for v in hand_t]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "losses.json"))
    a = ap.parse_args()
    if a.repeats < 5: raise SystemExit("--repeats must be >= 5 (medians of at least 5 rounds)")
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    gdata = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(B, D, generator=gdata, device=device)
    rows = []

    # CD-10: both sides sample from N(0, I) with Langevin (step 0.01, noise scale 1) and use their own generator
    net_h = make_net().to(device)
    model = BaseModel(network=copy.deepcopy(net_h))
    cd = ContrastiveDivergence(model, LangevinDynamics(model, step_size=ETA), k=K, init="noise",
                               generator=torch.Generator(device=device).manual_seed(1))
    opt_l = torch.optim.SGD(model.parameters(), lr=1e-4)
    opt_h = torch.optim.SGD(net_h.parameters(), lr=1e-4)
    g_h, noise = torch.Generator(device=device).manual_seed(1), torch.empty_like(x)
    rows.append(bench("CD-10", lambda: lib_step(cd, opt_l, x), lambda: hand_cd_step(net_h, opt_h, x, g_h, noise),
                      a.steps, a.repeats, device))

    # DSM, sigma = 0.1
    net_h = make_net().to(device)
    model = BaseModel(network=copy.deepcopy(net_h))
    dsm = DenoisingScoreMatching(model, sigma=SIGMA, generator=torch.Generator(device=device).manual_seed(1))
    opt_l = torch.optim.SGD(model.parameters(), lr=1e-4)
    opt_h = torch.optim.SGD(net_h.parameters(), lr=1e-4)
    g_h = torch.Generator(device=device).manual_seed(1)
    rows.append(bench("DSM", lambda: lib_step(dsm, opt_l, x), lambda: hand_dsm_step(net_h, opt_h, x, g_h),
                      a.steps, a.repeats, device))

    info = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": B, "dim": D, "k": K,
            "mlp": "2-128-128-1 SiLU", "repeats": a.repeats, "steps_per_repeat": a.steps, "target_ratio": 1.05, "results": rows}
    print(f"device {info['device']} ({info['device_name']}), torch {info['torch']}, {info['threads']} threads, "
          f"batch {B}, MLP {info['mlp']}, median of {a.repeats} rounds x {a.steps} steps")
    print(f"{'step':<8}{'library ms':>12}{'hand ms':>12}{'ratio':>8}")
    for r in rows: print(f"{r['step']:<8}{r['library_ms']:>12.3f}{r['hand_written_ms']:>12.3f}{r['ratio']:>8.3f}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f: json.dump(info, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
