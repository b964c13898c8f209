"""Benchmark: `torchebm_nb.samplers` against hand-written PyTorch loops doing the same math.

Workloads (chains x dim, steps):
- Langevin on a Gaussian with the closed-form gradient: 1000x2, 10000x2, 1000x100, 100 steps (target ratio <= 1.1);
  the hand loop is the textbook `x = x - eta * grad(x) + sqrt(2 eta) sigma * randn(...)` with grad = (x - mu) @ P.
- Langevin on an MLP energy 2-128-128-1 (SiLU), 10000 chains, 100 steps, hand autograd (target ratio <= 1.05).
- MALA and HMC (L = 10) on a 100-d Gaussian, closed-form gradient, against hand loops (for information).
Plus: HMC model evaluations per iteration (counted by a wrapper model), and the trajectory's memory with burn_in/thin.

Protocol: one warm-up, then at least `--repeats` rounds (short workloads get up to 101, about 1 s each); in each round the library run and the hand run are timed one after
the other (alternating which goes first, so load drift hits both alike; a device sync on CUDA). Reported: medians
over the rounds and their ratio (library / hand), and the ratio of the minima (the noise-free estimate).

    python benchmarks/bench_samplers.py [--device cpu|cuda] [--threads N] [--repeats 7]

Writes benchmarks/results/samplers.json.
"""
import argparse, json, math, os, platform, statistics, time
import torch
import torch.nn as nn
from torchebm_nb.core import BaseModel, GaussianModel
from torchebm_nb.samplers import LangevinDynamics, MALA, HamiltonianMonteCarlo

ETA, STEPS = 0.01, 100


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def timed(f, device):
    sync(device); t = time.perf_counter(); f(); sync(device)
    return time.perf_counter() - t


def interleaved(lib, hand, device, repeats):
    """Seconds of `lib` and `hand`: (median, min) of each over the rounds, alternating the order within rounds.
    Short workloads get more rounds (up to 101, about 1 s of each) so that scheduler noise on a shared machine
    averages out; the min is the classical noise-free estimate (noise only ever adds time)."""
    t_est = max(timed(lib, device), timed(hand, device))  # also the warm-up
    rounds = max(repeats, min(101, int(1.0 / max(t_est, 1e-4))))
    tl, th = [], []
    for r in range(rounds):
        if r % 2 == 0: tl.append(timed(lib, device)); th.append(timed(hand, device))
        else: th.append(timed(hand, device)); tl.append(timed(lib, device))
    return statistics.median(tl), statistics.median(th), min(tl), min(th), rounds


def gaussian(d, device):
    g = torch.Generator().manual_seed(d)
    a = torch.randn(d, d, generator=g) / math.sqrt(d)
    return GaussianModel(torch.zeros(d), a @ a.T + torch.eye(d)).to(device)


def bench_langevin_gaussian(B, d, device, repeats):
    model = gaussian(d, device)
    mu, P = model.mean, model.precision
    x0 = torch.randn(B, d, device=device)
    sampler = LangevinDynamics(model, step_size=ETA)
    gen = torch.Generator(device=device).manual_seed(0)
    c = math.sqrt(2 * ETA)

    def lib(): sampler.sample(x=x0, n_steps=STEPS, generator=gen)

    def hand():
        x = x0.clone()
        for _ in range(STEPS):
            x = x - ETA * ((x - mu) @ P) + c * torch.randn(x.shape, generator=gen, device=device)
    return interleaved(lib, hand, device, repeats)


def mlp(device):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 1)).to(device)


def bench_langevin_mlp(B, device, repeats):
    net = mlp(device)
    model = BaseModel(network=net)
    x0 = torch.randn(B, 2, device=device)
    sampler = LangevinDynamics(model, step_size=ETA)
    gen = torch.Generator(device=device).manual_seed(0)
    c = math.sqrt(2 * ETA)

    def lib(): sampler.sample(x=x0, n_steps=STEPS, generator=gen)

    def hand():
        x = x0.clone()
        for _ in range(STEPS):
            xg = x.detach().requires_grad_(True)
            g, = torch.autograd.grad(net(xg).squeeze(-1).sum(), xg)
            x = x - ETA * g + c * torch.randn(x.shape, generator=gen, device=device)
    return interleaved(lib, hand, device, repeats)


def bench_mala(B, d, n_steps, device, repeats):
    model = gaussian(d, device)
    mu, P = model.mean, model.precision
    x0 = torch.randn(B, d, device=device)
    eta = 0.05
    sampler = MALA(model, step_size=eta)
    gen = torch.Generator(device=device).manual_seed(0)
    c = math.sqrt(2 * eta)
    energy = lambda x: 0.5 * (((x - mu) @ P) * (x - mu)).sum(1)
    grad = lambda x: (x - mu) @ P

    def lib(): sampler.sample(x=x0, n_steps=n_steps, generator=gen)

    def hand():
        x = x0.clone(); E, g = energy(x), grad(x)
        for _ in range(n_steps):
            xi = torch.randn(x.shape, generator=gen, device=device)
            y = x - eta * g + c * xi
            Ey, gy = energy(y), grad(y)
            la = E - Ey + 0.5 * (xi ** 2).sum(1) - ((x - y + eta * gy) ** 2).sum(1) / (4 * eta)
            acc = torch.rand(B, generator=gen, device=device).log() < la
            x, E, g = torch.where(acc[:, None], y, x), torch.where(acc, Ey, E), torch.where(acc[:, None], gy, g)
    return interleaved(lib, hand, device, repeats)


def bench_hmc(B, d, n_steps, L, device, repeats):
    model = gaussian(d, device)
    mu, P = model.mean, model.precision
    x0 = torch.randn(B, d, device=device)
    eps = 0.1
    sampler = HamiltonianMonteCarlo(model, step_size=eps, n_leapfrog_steps=L)
    gen = torch.Generator(device=device).manual_seed(0)
    energy = lambda x: 0.5 * (((x - mu) @ P) * (x - mu)).sum(1)
    grad = lambda x: (x - mu) @ P

    def lib(): sampler.sample(x=x0, n_steps=n_steps, generator=gen)

    def hand():
        x = x0.clone(); E, g = energy(x), grad(x)
        for _ in range(n_steps):
            p = torch.randn(x.shape, generator=gen, device=device)
            H0 = E + 0.5 * (p ** 2).sum(1)
            xn, pn, gn = x, p - 0.5 * eps * g, g
            for i in range(L):
                xn = xn + eps * pn
                gn = grad(xn)
                pn = pn - (eps if i < L - 1 else 0.5 * eps) * gn
            En = energy(xn)
            acc = torch.rand(B, generator=gen, device=device).log() < H0 - En - 0.5 * (pn ** 2).sum(1)
            x, E, g = torch.where(acc[:, None], xn, x), torch.where(acc, En, E), torch.where(acc[:, None], gn, g)
    return interleaved(lib, hand, device, repeats)


class CountingNet(BaseModel):
    "An MLP energy that counts its forward passes (one per autograd gradient)."
    def __init__(self, device):
        super().__init__(network=mlp(device)); self.n_forward = 0
    def forward(self, x):
        self.n_forward += 1
        return super().forward(x)


def hmc_evaluations(device, n_steps=20, L=10):
    m = CountingNet(device)
    HamiltonianMonteCarlo(m, step_size=0.05, n_leapfrog_steps=L).sample(256, 2, n_steps=n_steps)
    return (m.n_forward - 1) / n_steps  # minus the one evaluation at the start of the run


def trajectory_memory(device, B=10_000, d=2, n_steps=1000, burn_in=200, thin=10):
    model = gaussian(d, device)
    sampler = LangevinDynamics(model, step_size=ETA)
    if device.type == "cuda": torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    _, traj = sampler.sample(B, d, n_steps=n_steps, burn_in=burn_in, thin=thin, return_trajectory=True)
    peak = (torch.cuda.max_memory_allocated() - base) if device.type == "cuda" else None
    n_kept = (n_steps - burn_in) // thin
    return {"shape": list(traj.shape), "bytes": traj.numel() * traj.element_size(),
            "expected_bytes": B * n_kept * d * traj.element_size(),
            "bytes_if_all_steps_kept": B * n_steps * d * traj.element_size(), "cuda_peak_bytes": peak}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (default 1: stable on shared cores)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu": torch.set_num_threads(args.threads)
    rows = []
    def add(name, res, target=None):
        lib, hand, lib_min, hand_min, rounds = res
        rows.append({"workload": name, "library_ms": 1e3 * lib, "hand_ms": 1e3 * hand, "ratio": lib / hand,
                     "library_min_ms": 1e3 * lib_min, "hand_min_ms": 1e3 * hand_min, "ratio_of_mins": lib_min / hand_min,
                     "rounds": rounds, "target": target})
        print(f"{name:<44} {1e3 * lib:9.2f} {1e3 * hand:9.2f} {lib / hand:6.3f} {lib_min / hand_min:9.3f} {rounds:6d}  "
              f"{'<= ' + str(target) if target else ''}", flush=True)
    print(f"{'workload':<44} {'lib ms':>9} {'hand ms':>9} {'ratio':>6} {'ratio min':>9} {'rounds':>6}  (medians; ratio = lib/hand)")
    for B, d in [(1000, 2), (10_000, 2), (1000, 100)]:
        add(f"Langevin Gaussian {B}x{d}, {STEPS} steps", bench_langevin_gaussian(B, d, device, args.repeats), 1.1)
    add(f"Langevin MLP 2-128-128-1 10000x2, {STEPS} steps", bench_langevin_mlp(10_000, device, args.repeats), 1.05)
    add("MALA Gaussian 1000x100, 100 steps", bench_mala(1000, 100, 100, device, args.repeats))
    add("HMC Gaussian 1000x100, 20 iter x L=10", bench_hmc(1000, 100, 20, 10, device, args.repeats))
    evals = hmc_evaluations(device)
    print(f"HMC model evaluations per iteration (L = 10): {evals:g}")
    mem = trajectory_memory(device)
    print(f"trajectory 10000x2, 1000 steps, burn_in=200, thin=10: shape {mem['shape']}, {mem['bytes'] / 2**20:.2f} MiB "
          f"(expected {mem['expected_bytes'] / 2**20:.2f} MiB; all steps would be {mem['bytes_if_all_steps_kept'] / 2**20:.2f} MiB)"
          + (f", CUDA peak {mem['cuda_peak_bytes'] / 2**20:.2f} MiB" if mem["cuda_peak_bytes"] is not None else ""))
    out = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.machine(), "cpu_count": os.cpu_count(), "repeats": args.repeats, "rows": rows,
           "hmc_evaluations_per_iteration": evals, "hmc_leapfrog_steps": 10, "trajectory_memory": mem}
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "samplers.json"), "w") as f: json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
