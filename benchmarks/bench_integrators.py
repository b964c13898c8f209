"""Benchmark: `torchebm_nb.integrators` fixed-step loops against hand-written PyTorch loops doing the same math.

Drift: a small time-conditioned MLP, f(x, t) = net([x, t]) with net = Linear(d+1, H) - SiLU - Linear(H, H) - SiLU -
Linear(H, d), under `torch.no_grad()`. Methods: Euler, Euler-Maruyama (constant amplitude, a seeded generator), RK4,
each over 100 steps of a uniform grid on [0, 1]. The hand loops are the textbook ones a user would write, with the time
tensors prepared before the loop (so they are not charged for building them):

    euler: x = x + h * f(x, t)
    em:    x = x + h * f(x, t) + g * sqrt(h) * torch.randn(x.shape, generator=gen)
    rk4:   k1 = f(x, t); k2 = f(x + h/2 k1, t + h/2); k3 = f(x + h/2 k2, t + h/2); k4 = f(x + h k3, t + h)
           x = x + h/6 (k1 + 2 k2 + 2 k3 + k4)

Protocol: one warm-up, then rounds in which the library run and the hand run are timed one after the other
(alternating which goes first, so load drift hits both alike; a device sync on CUDA). Reported: medians over the
rounds and their ratio (library / hand), and the ratio of the minima (the noise-free estimate).

    python benchmarks/bench_integrators.py [--device cpu|cuda] [--threads N] [--repeats 21]
"""
import argparse, math, statistics, time
import torch
import torch.nn as nn
from torchebm_nb.integrators import EulerMaruyamaIntegrator, RK4Integrator

N_STEPS = 100


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def timed(f, device):
    sync(device); t = time.perf_counter(); f(); sync(device)
    return time.perf_counter() - t


def interleaved(lib, hand, device, repeats):
    "(median lib, median hand, min lib, min hand, rounds), alternating the order within rounds."
    t_est = max(timed(lib, device), timed(hand, device))  # also the warm-up
    rounds = max(repeats, min(101, int(1.0 / max(t_est, 1e-4))))
    tl, th = [], []
    for r in range(rounds):
        if r % 2 == 0: tl.append(timed(lib, device)); th.append(timed(hand, device))
        else: th.append(timed(hand, device)); tl.append(timed(lib, device))
    return statistics.median(tl), statistics.median(th), min(tl), min(th), rounds


def make_drift(d, hidden, device):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(d + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                        nn.Linear(hidden, d)).to(device)
    def drift(x, t): return net(torch.cat([x, t[:, None]], 1))
    return drift


def workloads(B, d, hidden, device):
    f = make_drift(d, hidden, device)
    x0 = torch.randn(B, d, device=device)
    grid = torch.linspace(0, 1, N_STEPS + 1, device=device)
    h, g = 1.0 / N_STEPS, 0.5
    tg = [torch.full((B,), i * h, device=device) for i in range(N_STEPS + 1)]          # prepared before the loops
    tm = [torch.full((B,), (i + 0.5) * h, device=device) for i in range(N_STEPS)]
    euler, rk4 = EulerMaruyamaIntegrator(), RK4Integrator()
    gen_l = torch.Generator(device=device).manual_seed(0)
    gen_h = torch.Generator(device=device).manual_seed(0)

    def hand_euler():
        x = x0
        for i in range(N_STEPS): x = x + h * f(x, tg[i])
        return x

    def hand_em():
        x = x0
        for i in range(N_STEPS): x = x + h * f(x, tg[i]) + g * math.sqrt(h) * torch.randn(x.shape, generator=gen_h, device=device)
        return x

    def hand_rk4():
        x = x0
        for i in range(N_STEPS):
            k1 = f(x, tg[i]); k2 = f(x + h / 2 * k1, tm[i]); k3 = f(x + h / 2 * k2, tm[i]); k4 = f(x + h * k3, tg[i + 1])
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    # the two sides compute the same numbers (checked once, with equal generator states)
    with torch.no_grad():
        for lib, hand in ((lambda: euler.solve(f, x0, grid), hand_euler), (lambda: rk4.solve(f, x0, grid), hand_rk4)):
            assert torch.allclose(lib(), hand(), atol=1e-5)
        gen_l.manual_seed(1); gen_h.manual_seed(1)
        assert torch.allclose(euler.solve(f, x0, grid, diffusion=g, generator=gen_l), hand_em(), atol=1e-5)
    return {"euler": (lambda: euler.solve(f, x0, grid), hand_euler),
            "euler_maruyama": (lambda: euler.solve(f, x0, grid, diffusion=g, generator=gen_l), hand_em),
            "rk4": (lambda: rk4.solve(f, x0, grid), hand_rk4)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=21)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    configs = [(256, 2, 64), (1024, 2, 128), (256, 32, 256)]
    print(f"device={device} threads={a.threads} torch={torch.__version__} steps={N_STEPS}")
    print(f"{'method':<15} {'B x d, hidden':<16} {'lib ms':>9} {'hand ms':>9} {'ratio':>7} {'ratio(min)':>11} {'rounds':>7}")
    with torch.no_grad():
        for B, d, hidden in configs:
            for name, (lib, hand) in workloads(B, d, hidden, device).items():
                ml, mh, nl, nh, rounds = interleaved(lib, hand, device, a.repeats)
                print(f"{name:<15} {f'{B} x {d}, {hidden}':<16} {ml * 1e3:9.2f} {mh * 1e3:9.2f} {ml / mh:7.3f} "
                      f"{nl / nh:11.3f} {rounds:7d}")


if __name__ == "__main__":
    main()
