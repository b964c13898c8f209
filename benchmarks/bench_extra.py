"""Benchmark: workloads of issue 8 not covered by bench_samplers.py: Langevin on `DoubleWellModel` (closed-form
gradient) at 1000x2, 10000x2 and 1000x100 chains x dim, 100 steps, against a hand-written loop with the same
closed-form gradient (target ratio <= 1.1).

Protocol (as bench_samplers.py): one warm-up, then `--repeats` rounds; in each round the library run and the hand run
are timed one after the other, alternating which goes first. Reported: medians over the rounds and their ratio
(library / hand), and the ratio of the minima.

Also, with `--compile`: does `torch.compile` speed up a Langevin loop on an MLP energy (2-128-128-1, 10000 chains,
50 steps)? The compiled step is `x - eta * torch.func.grad(E)(x) + c * noise` under `torch.compile`, against the
library's eager `LangevinDynamics` (for information: no sampler offers a compile option unless this shows a gain).

    python benchmarks/bench_extra.py [--device cpu|cuda] [--threads N] [--repeats 7] [--compile] [--out PATH]

Writes benchmarks/results/extra.json.
"""
import argparse, json, math, os, platform, statistics, time
import torch
from torchebm_nb.core import DoubleWellModel
from torchebm_nb.samplers import LangevinDynamics

ETA, STEPS, H, B_WELL = 0.01, 100, 2.0, 1.0


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def timed(f, device):
    sync(device); t0 = time.perf_counter(); f(); sync(device)
    return time.perf_counter() - t0


def interleaved(lib, hand, device, repeats):
    lib(); hand()   # warm-up
    tl, th = [], []
    for r in range(repeats):
        if r % 2: th.append(timed(hand, device)); tl.append(timed(lib, device))
        else: tl.append(timed(lib, device)); th.append(timed(hand, device))
    return tl, th


def bench_langevin_double_well(B, d, device, repeats):
    model = DoubleWellModel(H, B_WELL)
    sampler = LangevinDynamics(model, step_size=ETA)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.randn(B, d, generator=gen, device=device)
    c = math.sqrt(2 * ETA)

    def lib(): sampler.sample(x=x0, n_steps=STEPS, generator=gen)

    def hand():
        x = x0.clone()
        noise = torch.empty_like(x)
        for _ in range(STEPS):
            g = (4 * H) * x * (x.square() - B_WELL ** 2)
            x.add_(g, alpha=-ETA).add_(noise.normal_(generator=gen), alpha=c)
        return x

    return interleaved(lib, hand, device, repeats)


def bench_compile(device, repeats, B=10_000, n_steps=50):
    "Median seconds of the library's eager Langevin and of a torch.compile'd hand step on an MLP energy, and compile time."
    from torchebm_nb.models import MLPEnergyModel
    torch.manual_seed(0)
    model = MLPEnergyModel(2, (128, 128)).to(device)
    net, x0, c = model.network, torch.randn(B, 2, device=device), math.sqrt(2 * ETA)
    gradf = torch.func.grad(lambda x: net(x).sum())
    step = torch.compile(lambda x, n: x - ETA * gradf(x) + c * n)
    sampler = LangevinDynamics(model, step_size=ETA)

    def compiled(k=n_steps):
        g = torch.Generator(device=device).manual_seed(0)
        x = x0.clone()
        for _ in range(k): x = step(x, torch.randn(x.shape, generator=g, device=device))
        return x

    def eager(): sampler.sample(x=x0, n_steps=n_steps, generator=torch.Generator(device=device).manual_seed(0))
    t_compile = timed(lambda: compiled(2), device)
    te, tc = interleaved(eager, compiled, device, repeats)
    return {"workload": f"Langevin MLP 2-128-128-1 {B}x2, {n_steps} steps", "library_eager_ms": 1e3 * statistics.median(te),
            "compiled_step_ms": 1e3 * statistics.median(tc), "speedup": statistics.median(te) / statistics.median(tc),
            "compile_seconds": t_compile}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (default 1: stable on shared cores)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile on an MLP Langevin loop")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "extra.json"))
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = []
    print(f"{'workload':<44} {'lib ms':>9} {'hand ms':>9} {'ratio':>6} {'ratio min':>9}  (medians; ratio = lib/hand)")
    for B, d in ((1000, 2), (10000, 2), (1000, 100)):
        reps = max(a.repeats, 21) if B * d <= 20000 else a.repeats  # short workloads: more rounds, cheap
        tl, th = bench_langevin_double_well(B, d, device, reps)
        lib, hand = statistics.median(tl), statistics.median(th)
        row = {"workload": f"Langevin DoubleWell {B}x{d}, {STEPS} steps", "library_ms": 1e3 * lib, "hand_ms": 1e3 * hand,
               "ratio": lib / hand, "library_min_ms": 1e3 * min(tl), "hand_min_ms": 1e3 * min(th),
               "ratio_of_mins": min(tl) / min(th), "rounds": reps, "target": 1.1}
        rows.append(row)
        print(f"{row['workload']:<44} {row['library_ms']:9.2f} {row['hand_ms']:9.2f} {row['ratio']:6.3f} {row['ratio_of_mins']:9.3f}")
    comp = None
    if a.compile:
        try:
            comp = bench_compile(device, a.repeats)
            print(f"torch.compile, {comp['workload']}: library eager {comp['library_eager_ms']:.1f} ms, compiled step "
                  f"{comp['compiled_step_ms']:.1f} ms, speed-up {comp['speedup']:.2f}x (compile {comp['compile_seconds']:.1f} s)")
        except Exception as e:  # no compiler toolchain, unsupported backend...
            comp = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"torch.compile failed: {comp['error']}")
    out = {"device": a.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.machine(), "repeats": a.repeats, "rows": rows}
    if comp is not None: out["torch_compile"] = comp
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f: json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
