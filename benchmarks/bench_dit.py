"""Benchmark: one DiT-S/2 training step (forward, squared-error loss, backward; no optimiser step) in float32 and under
mixed-precision autocast.

Model: `torchebm_nb.models.dit_s_2()` in the paper's configuration (32x32x4 latents, 1000 classes, learned sigma:
8 output channels, 33 M parameters), in training mode (label dropout on, drawn from a fixed generator). Batch: `--batch`
latents x ~ N(0, I), times t ~ U(0, 1), random labels; target ~ N(0, I) of the output's shape.

Modes: `float32` (plain), `bfloat16` (`torch.autocast(device, dtype=torch.bfloat16)`), and on CUDA also `float16`
(autocast + `torch.amp.GradScaler`, the loss scaled before the backward pass). Protocol: warm-up steps per mode (one on
the CPU; three on CUDA, where the first steps also pay for kernel selection and the allocator), then `--repeats`
rounds; in each round every mode is timed once (on CUDA between two `torch.cuda.synchronize()`), the order rotating
from round to round (interleaved, so slow drifts of a shared machine hit all modes alike). Reported: the median step
time per mode and its ratio to float32 (below 1: faster than float32).

    python benchmarks/bench_dit.py [--device cpu|cuda] [--threads 1] [--batch 8] [--repeats 7] [--out PATH]
    python benchmarks/bench_dit.py --device cuda          # batch 64 by default on CUDA (8 would time kernel launches)

Writes benchmarks/results/dit.json (dit_cuda.json for --device cuda unless --out is given).
"""
import argparse, json, os, platform, statistics, time
import torch
from torchebm_nb.models import dit_s_2


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def make_step(model, batch, mode, device):
    x, t, y, target, gen = batch
    scaler = torch.amp.GradScaler("cuda") if mode == "float16" else None
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(mode)

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = (model(x, t, y, generator=gen).float() - target).square().mean()
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss
    return step


def timed(f, device):
    sync(device); t0 = time.perf_counter(); f(); sync(device)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="default: 8 on the CPU, 64 on CUDA")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {a.device}: no CUDA device here (torch {torch.__version__}); run on the CPU or on a GPU machine")
    if a.batch is None: a.batch = 64 if device.type == "cuda" else 8
    torch.set_num_threads(a.threads)
    out_path = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                     "dit.json" if device.type == "cpu" else f"dit_{device.type}.json")
    modes = ["float32", "bfloat16"] + (["float16"] if device.type == "cuda" else [])

    torch.manual_seed(0)
    model = dit_s_2().to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(a.batch, 4, 32, 32, generator=g, device=device)
    t = torch.rand(a.batch, generator=g, device=device)
    y = torch.randint(0, 1000, (a.batch,), generator=g, device=device)
    target = torch.randn(a.batch, 8, 32, 32, generator=g, device=device)
    batch = (x, t, y, target, torch.Generator(device=device).manual_seed(1))
    steps = {m: make_step(model, batch, m, device) for m in modes}

    for m in modes:                     # warm-up
        for _ in range(3 if device.type == "cuda" else 1): steps[m]()
    sync(device)
    times = {m: [] for m in modes}
    for r in range(a.repeats):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for m in order: times[m].append(timed(steps[m], device))

    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"DiT-S/2 ({n_params / 1e6:.1f} M parameters), batch {a.batch} x 4 x 32 x 32, forward + backward, "
          f"{device.type}, {torch.get_num_threads()} thread(s), {a.repeats} interleaved rounds")
    print(f"{'mode':<10} {'median s':>9} {'min s':>8} {'ratio':>6}  (ratio = median / float32 median)")
    rows = []
    for m in modes:
        row = {"mode": m, "median_s": med[m], "min_s": min(times[m]), "ratio_to_float32": med[m] / med["float32"],
               "times_s": times[m]}
        rows.append(row)
        print(f"{m:<10} {row['median_s']:9.3f} {row['min_s']:8.3f} {row['ratio_to_float32']:6.2f}")
    info = {"benchmark": "DiT-S/2 forward+backward step", "device": device.type, "threads": torch.get_num_threads(),
            "batch": a.batch, "input": [4, 32, 32], "n_params": n_params, "repeats": a.repeats,
            "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "rows": rows}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f: json.dump(info, f, indent=1)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
