"""Compiled sampler loops (issue 16): our eager loop, our compiled loop (`compile=True`), BlackJAX and NumPyro, one run.

Cases, all float32 on the CPU with one thread (the process pinned to one core), timed interleaved (each repeat runs every implementation once), medians:

- HMC, step 0.1, L = 10, on a 100-d Gaussian N(0, diag(s^2)) (dense precision matrix on both sides), 4 and 1000 chains:
  time per iteration and ESS per second (bulk ESS over all chains, mean over the coordinates, of the timed run's draws);
- unadjusted Langevin (eta = 0.01) on an MLP energy 2-128-128-1 (SiLU, same weights on both sides), 1000 and 10000
  chains: time per iteration (BlackJAX: `blackjax.sgld` with the full gradient, which is this update; NumPyro has no
  unadjusted Langevin kernel);
- our compile time (first call, fresh inductor cache unless --warm-cache) and the break-even number of iterations
  compile_time / (eager - compiled) per iteration.

Our compiled loop runs twice: with its default blocks (a `scan` over up to 64 iterations, compiled once for any length)
and with unrolled blocks (K copies of the iteration in one graph, about 20 model evaluations: 2 iterations for HMC
with L = 10, 20 for Langevin), which is what a model whose gradient a `scan` cannot trace gets, and what CUDA graphs get.

Run with a Python that has JAX, BlackJAX and NumPyro installed beside torch (benchmark-only dependencies:
`pip install jax blackjax numpyro`); without them the BlackJAX/NumPyro columns are skipped with a note. Results: benchmarks/results/compiled.json.
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import argparse
import json
import math
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (medians over them)")
    p.add_argument("--quick", action="store_true", help="fewer iterations and repeats (a smoke run)")
    p.add_argument("--block", type=int, default=None, help="compile_block K (default: the samplers' own, about 20 model evaluations per block)")
    p.add_argument("--warm-cache", action="store_true", help="keep the inductor disk cache (compile time then understates a first run)")
    p.add_argument("--no-jax", action="store_true", help="skip BlackJAX and NumPyro even if installed")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU core")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/compiled.json"))
    return p.parse_args()

ARGS = _parse()
# one core for everything: XLA's CPU runtime runs large dots on more than one thread even when told to use one (at
# 10 000 chains it used both cores of this machine); pinned, every implementation gets the same single core
if hasattr(os, "sched_setaffinity") and not ARGS.no_pin: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
if not ARGS.warm_cache: os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_bench_")

import torch
torch.set_num_threads(1)
from torchebm_nb.core import GaussianModel, BaseModel
from torchebm_nb.samplers import HamiltonianMonteCarlo, LangevinDynamics
from torchebm_nb.diagnostics import effective_sample_size

JAX_NOTE = None
if ARGS.no_jax: JAX_NOTE = "BlackJAX/NumPyro skipped (--no-jax)"
else:
    try:
        import jax, jax.numpy as jnp, blackjax
        jax.config.update("jax_enable_x64", False)
    except ImportError as e: JAX_NOTE = f"BlackJAX skipped: {e}"; blackjax = None
    try:
        import numpyro
        from numpyro.infer import MCMC, HMC as NHMC
    except ImportError as e: numpyro = None; JAX_NOTE = (JAX_NOTE or "") + f" NumPyro skipped: {e}"
if ARGS.no_jax or JAX_NOTE and "BlackJAX skipped" in JAX_NOTE: blackjax = None
if ARGS.no_jax: numpyro = None


def wall(f):
    t = time.perf_counter(); out = f(); return time.perf_counter() - t, out

def ess_mean(draws):
    "Bulk ESS (all chains), mean over the coordinates; draws `(chains, n, d)`."
    return float(effective_sample_size(torch.as_tensor(draws)).mean())

# ---------------------------------------------------------------- targets
D = 100
VAR = torch.linspace(0.5, 2.0, D)

def gaussian():
    return GaussianModel(torch.zeros(D), torch.diag(VAR))

def jax_gaussian_logdensity():
    P = jnp.asarray(torch.linalg.inv(torch.diag(VAR)).numpy())
    return lambda x: -0.5 * x @ P @ x

def mlp():
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
                              torch.nn.Linear(128, 1))
    with torch.no_grad():
        for p in net.parameters(): p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return net

def jax_mlp_grad(net):
    W = [(jnp.asarray(l.weight.detach().numpy()), jnp.asarray(l.bias.detach().numpy())) for l in net if isinstance(l, torch.nn.Linear)]
    def energy(x):
        h = jax.nn.silu(x @ W[0][0].T + W[0][1]); h = jax.nn.silu(h @ W[1][0].T + W[1][1])
        return (h @ W[2][0].T + W[2][1])[0]
    return jax.grad(lambda x: -energy(x))   # grad of the log-density

# ---------------------------------------------------------------- implementations: each returns (timed run, compile seconds)
def ours_hmc(B, n, compile, unrolled=False):
    s = HamiltonianMonteCarlo(gaussian(), step_size=0.1, n_leapfrog_steps=10, compile=compile, compile_block=ARGS.block)
    if unrolled: s._block_kinds = ("unrolled",)
    x0 = torch.randn(B, D, generator=torch.Generator().manual_seed(1))
    run = lambda: s.sample(x=x0, n_steps=n, return_trajectory=True, generator=torch.Generator().manual_seed(2))
    first, _ = wall(run)
    def timed():
        t, (x, traj) = wall(run); return t, traj
    return timed, first

def ours_langevin(B, n, compile, unrolled=False):
    s = LangevinDynamics(BaseModel(network=mlp()), step_size=0.01, compile=compile, compile_block=ARGS.block)
    if unrolled: s._block_kinds = ("unrolled",)
    x0 = torch.randn(B, 2, generator=torch.Generator().manual_seed(1))
    run = lambda: s.sample(x=x0, n_steps=n, generator=torch.Generator().manual_seed(2))
    first, _ = wall(run)
    def timed():
        t, _ = wall(run); return t, None
    return timed, first

def blackjax_hmc(B, n):
    hmc = blackjax.hmc(jax_gaussian_logdensity(), step_size=0.1, inverse_mass_matrix=jnp.ones(D), num_integration_steps=10)
    x0 = jnp.asarray(torch.randn(B, D, generator=torch.Generator().manual_seed(1)).numpy())
    states = jax.vmap(hmc.init)(x0)
    @jax.jit
    def run(key, st):
        def body(st, k):
            st, _ = jax.vmap(hmc.step)(jax.random.split(k, B), st)
            return st, st.position
        return jax.lax.scan(body, st, jax.random.split(key, n))
    key = jax.random.PRNGKey(0)
    first, _ = wall(lambda: jax.block_until_ready(run(key, states)))
    def timed():
        t, (_, xs) = wall(lambda: jax.block_until_ready(run(key, states))); return t, torch.as_tensor(jax.device_get(xs)).transpose(0, 1)
    return timed, first

def numpyro_hmc(B, n):
    """NumPyro's MCMC.run traces and compiles on every call (seconds, varying by tenths): time runs of N and 2N
    iterations, N large enough that the sampling time dwarfs that variation, and report the difference, scaled to n
    iterations (with the last n draws, for the ESS)."""
    N = max(n, (2_000 if ARGS.quick else 20_000) if B <= 16 else (40 if ARGS.quick else 400))
    P = jax_gaussian_logdensity()
    x0 = jnp.asarray(torch.randn(B, D, generator=torch.Generator().manual_seed(1)).numpy())
    def make(k):
        kernel = NHMC(potential_fn=lambda x: -P(x), step_size=0.1, num_steps=10, adapt_step_size=False, adapt_mass_matrix=False)
        mcmc = MCMC(kernel, num_warmup=0, num_samples=k, num_chains=B, chain_method="vectorized", progress_bar=False)
        def run():
            mcmc.run(jax.random.PRNGKey(0), init_params=x0)
            return jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        return run
    one, two = make(N), make(2 * N)
    first, _ = wall(one)
    def timed():
        t1, _ = wall(one); t2, xs = wall(two)
        return max(t2 - t1, 1e-9) * n / N, torch.as_tensor(jax.device_get(xs))[:, -n:]   # n of the N draws of t2 - t1 seconds
    return timed, first

def blackjax_langevin(B, n):
    grad = jax.vmap(jax_mlp_grad(mlp()))
    sgld = blackjax.sgld(lambda x, _: grad(x))
    x0 = jnp.asarray(torch.randn(B, 2, generator=torch.Generator().manual_seed(1)).numpy())
    @jax.jit
    def run(key, x):
        def body(x, k): return sgld.step(k, x, None, 0.01), None
        return jax.lax.scan(body, x, jax.random.split(key, n))[0]
    key = jax.random.PRNGKey(0)
    first, _ = wall(lambda: jax.block_until_ready(run(key, x0)))
    def timed():
        t, _ = wall(lambda: jax.block_until_ready(run(key, x0))); return t, None
    return timed, first

# ---------------------------------------------------------------- one case
def case(name, n, impls, ess):
    print(f"\n== {name}: {n} iterations per run", flush=True)
    timers, first = {}, {}
    for k, make in impls.items():
        if make is None: continue
        timers[k], first[k] = make()
        print(f"  {k}: first call {first[k]:.2f} s", flush=True)
    times, esss = {k: [] for k in timers}, {k: [] for k in timers}
    for r in range(ARGS.repeats):
        for k, f in timers.items():
            t, draws = f()
            times[k].append(t)
            if ess and draws is not None: esss[k].append(ess_mean(draws) / t)
    res = {"iterations": n}
    for k in timers:
        t = statistics.median(times[k])
        res[k] = {"per_iter_s": t / n, "first_call_s": first[k], "times_s": times[k]}
        if esss[k]: res[k]["ess_per_s"] = statistics.median(esss[k])
    e = res.get("eager")
    for k in [k for k in timers if k.startswith("compiled")]:
        c = res[k]
        c["compile_s"] = max(0.0, c["first_call_s"] - c["per_iter_s"] * n)
        if e:
            gain = e["per_iter_s"] - c["per_iter_s"]
            be = c["compile_s"] / gain if gain > 0 else None
            if k == "compiled": res["break_even_iterations"] = be
            else: c["break_even_iterations"] = be
    for k in timers:
        extra = f", ESS/s {res[k]['ess_per_s']:.0f}" if "ess_per_s" in res[k] else ""
        print(f"  {k:9s} {res[k]['per_iter_s'] * 1e6:10.1f} us/iter{extra}", flush=True)
    return res

def main():
    n_hmc = {4: 40 if ARGS.quick else 400, 1000: 10 if ARGS.quick else 40}
    n_ld = {1000: 20 if ARGS.quick else 100, 10_000: 10 if ARGS.quick else 40}
    have_bj, have_np = blackjax is not None, numpyro is not None
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "block": ARGS.block, "repeats": ARGS.repeats,
               "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
               "jax_note": JAX_NOTE, "cases": {}}
    if have_bj: results["blackjax"], results["jax"] = blackjax.__version__, jax.__version__
    if have_np: results["numpyro"] = numpyro.__version__
    for B in (4, 1000):
        n = n_hmc[B]
        results["cases"][f"hmc_gaussian100_{B}"] = case(f"HMC 100-d Gaussian, {B} chains, L=10", n, {
            "eager": lambda: ours_hmc(B, n, False), "compiled": lambda: ours_hmc(B, n, True),
            "compiled_unrolled": lambda: ours_hmc(B, n, True, unrolled=True),
            "blackjax": (lambda: blackjax_hmc(B, n)) if have_bj else None,
            "numpyro": (lambda: numpyro_hmc(B, n)) if have_np else None}, ess=True)
    for B in (1000, 10_000):
        n = n_ld[B]
        results["cases"][f"langevin_mlp_{B}"] = case(f"Langevin MLP 2-128-128-1, {B} chains", n, {
            "eager": lambda: ours_langevin(B, n, False), "compiled": lambda: ours_langevin(B, n, True),
            "compiled_unrolled": lambda: ours_langevin(B, n, True, unrolled=True),
            "blackjax": (lambda: blackjax_langevin(B, n)) if have_bj else None}, ess=False)
    pathlib.Path(ARGS.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(ARGS.out).write_text(json.dumps(results, indent=1))
    print("\n" + table(results))

def table(results):
    cols = ["eager", "compiled", "compiled_unrolled", "blackjax", "numpyro"]
    lines = ["| case | ours eager | ours compiled | ours compiled, unrolled blocks | BlackJAX | NumPyro | compiled / eager | compiled / BlackJAX | compile s | break-even iters |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["cases"].items():
        def cell(k):
            if k not in r: return "—"
            s = f"{r[k]['per_iter_s'] * 1e6:.0f} µs"
            return s + (f" ({r[k]['ess_per_s']:.0f} ESS/s)" if "ess_per_s" in r[k] else "")
        ratio = lambda a, b: f"{r[a]['per_iter_s'] / r[b]['per_iter_s']:.2f}" if a in r and b in r else "—"
        be = r.get("break_even_iterations")
        lines.append(f"| {name} | " + " | ".join(cell(k) for k in cols) + f" | {ratio('compiled', 'eager')} | "
                     f"{ratio('compiled', 'blackjax')} | {r['compiled'].get('compile_s', float('nan')):.1f} | "
                     f"{'—' if be is None else f'{be:.0f}'} |")
    if results.get("jax_note"): lines.append(f"\n{results['jax_note']}")
    return "\n".join(lines)

if __name__ == "__main__": main()
