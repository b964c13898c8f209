"""Data-parallel step time: `EBMTrainer` on two gloo processes against one process, on the CPU.

Every configuration trains the same model on the same global batch (the trainer splits it over the ranks and averages
the gradients), so the work per step is the same and only its distribution differs:

- `1 proc x 1 thread`: one process, one intra-op thread;
- `1 proc x 2 threads`: one process, two intra-op threads (the other way to use two cores);
- `2 procs x 1 thread`: `torchrun --nproc_per_node 2`, gloo, one thread each (gradient all-reduce every step).

Each run warms up, then times `fit` over `--steps` steps; a row is the median over `--repeats` runs, the configurations
interleaved (1, 2, 3, 1, 2, 3, ...) so that a change in the machine's load hits all of them alike. Per-step time
includes the gradient all-reduce and the per-step metric bookkeeping, i.e. what a user of `fit` waits for.

    python benchmarks/bench_ddp.py [--losses dsm,cd,fm] [--batch 1024] [--hidden 256] [--steps 40] [--repeats 5]

Writes benchmarks/results/ddp.json (or --out) with every run's time, for the Benchmarks page.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone

CONFIGS = (("1 proc x 1 thread", 1, 1), ("1 proc x 2 threads", 1, 2), ("2 procs x 1 thread", 2, 1))


def worker(args):
    "One timed run (inside one process, or on every rank of a torchrun job): writes ms per step to args.result."
    import torch, torch.nn as nn, torch.distributed as dist
    torch.set_num_threads(args.threads)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed: dist.init_process_group("gloo")
    from torchebm_nb.trainers import EBMTrainer
    from torchebm_nb.models import MLPEnergyModel, TimeConditionedMLP
    from torchebm_nb.samplers import LangevinDynamics
    from torchebm_nb.losses import DenoisingScoreMatching, ContrastiveDivergence, FlowMatchingLoss
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1 + (dist.get_rank() if distributed else 0))
    if args.loss == "fm":
        model = TimeConditionedMLP(2, hidden=args.hidden, n_layers=3)
        loss = FlowMatchingLoss(generator=g)
    else:
        model = MLPEnergyModel(2, (args.hidden,) * 3)
        loss = (DenoisingScoreMatching(sigma=0.1, generator=g) if args.loss == "dsm" else
                ContrastiveDivergence(sampler=LangevinDynamics(model, step_size=0.01), k=10, init="data", generator=g))
    data = torch.randn(args.batch * 8, 2, generator=torch.Generator().manual_seed(2))
    t = EBMTrainer(model, None, torch.optim.Adam(model.parameters(), lr=1e-4), loss, seed=3)
    t.fit(data, n_steps=5, batch_size=args.batch, progress=False)                  # warm-up
    if distributed: dist.barrier()
    t0 = time.perf_counter()
    t.fit(data, n_steps=args.steps, batch_size=args.batch, progress=False, log_every=args.steps)
    if distributed: dist.barrier()
    ms = 1e3 * (time.perf_counter() - t0) / args.steps
    if not distributed or dist.get_rank() == 0:
        with open(args.result, "w") as f: json.dump({"ms_per_step": ms}, f)
    if distributed: dist.destroy_process_group()


def run_config(args, loss, nproc, threads):
    with tempfile.TemporaryDirectory() as d:
        res = os.path.join(d, "r.json")
        wargs = [__file__, "--worker", "--loss", loss, "--batch", str(args.batch), "--hidden", str(args.hidden),
                 "--steps", str(args.steps), "--threads", str(threads), "--result", res]
        cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *wargs]
               if nproc > 1 else [sys.executable, *wargs])
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode: raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        with open(res) as f: return json.load(f)["ms_per_step"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--loss", default="dsm", help=argparse.SUPPRESS)
    p.add_argument("--losses", default="dsm,cd,fm", help="objectives to time: dsm, cd (CD-10), fm (default: all three)")
    p.add_argument("--batch", type=int, default=1024, help="global batch size (default 1024)")
    p.add_argument("--hidden", type=int, default=256, help="width of the 3 hidden layers (default 256)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per run (default 40)")
    p.add_argument("--repeats", type=int, default=5, help="runs per configuration, interleaved (default 5)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ddp.json"),
                   help="where to write the results (default benchmarks/results/ddp.json)")
    args = p.parse_args()
    if args.worker: return worker(args)
    print(f"EBMTrainer step time, global batch {args.batch}, MLP 3x{args.hidden}, CPU ({os.cpu_count()} cores), "
          f"median of {args.repeats} interleaved runs of {args.steps} steps", flush=True)
    head = "| loss | " + " | ".join(c[0] for c in CONFIGS) + " | 2 procs / 1 proc x 1 thread |"
    print(head); print("|" + "---|" * (len(CONFIGS) + 2))
    import torch
    out = {"benchmark": "EBMTrainer data-parallel step, CPU", "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "batch": args.batch, "hidden": args.hidden, "steps": args.steps, "repeats": args.repeats,
           "configs": [c[0] for c in CONFIGS], "rows": []}
    for loss in args.losses.split(","):
        times = {c[0]: [] for c in CONFIGS}
        for _ in range(args.repeats):
            for name, nproc, threads in CONFIGS: times[name].append(run_config(args, loss, nproc, threads))
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = " | ".join(f"{med[c[0]]:.1f} ms" for c in CONFIGS)
        print(f"| {loss} | {cells} | {med['2 procs x 1 thread'] / med['1 proc x 1 thread']:.2f} |", flush=True)
        out["rows"].append({"loss": loss, "median_ms": med, "times_ms": times,
                            "ratio_2procs_to_1proc_1thread": med["2 procs x 1 thread"] / med["1 proc x 1 thread"]})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f: json.dump(out, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
