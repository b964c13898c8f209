"""Equilibrium matching and energy matching side by side with TorchEBM 0.8.9, at the same settings.

Both implementations train the same network (`quality.make_model`, the MLP energy 2-64-64-64-1, same initial weights)
on the same data batches and the same noise batches (given to the losses as `x0=`), for the same iterations, with
the settings of `benchmarks/ebm_without_mcmc.py` (EQM and EM there). What each loss draws itself (times, smoothing
noise, Langevin chains, couplings) comes from its own source: our generator, upstream's global RNG seeded with the
same number. Everything after training (samplers, grid, held-out set) is shared, so the figures differ only by
the loss that trained the network:

- EqM: 2-Wasserstein of 2000 descent samples (40 steps of 0.02 through `EqMEnergy(field, "implicit")`) and of an
  Euler `FlowSampler(negate_velocity=True)` with 10 steps, to 2000 held-out exact samples;
- energy matching: grid KL of exp(-V/epsilon_max) on the 200x200 grid, and W2 of one tempered sweep's samples.

Upstream's default coupling for energy matching ("ot") is its auction solver, about 1 s a step at batch 256 on one
core, so the trained comparison gives upstream's loss our exact assignment (`ExactOTCoupling`, wrapped in upstream's
coupling class; both solvers are exact, and in --quick mode, which trains with both, they give the same figures); the
step timing reports upstream with its own solver and with ours.

Training-step time: each implementation's step (EqM; energy matching's warm-up step and joint step), timed in
interleaved blocks (ours, upstream, upstream, ours, ...) on fresh copies of the network, medians over the blocks and
the ratio upstream / ours (above 1: ours is faster). The machine is shared, so only the ratios of interleaved
medians are meaningful.

TorchEBM is a benchmark-only dependency (`pip install torchebm==0.8.9`).

    python benchmarks/ebm_without_mcmc_upstream.py [--quick] [--out PATH]
    python benchmarks/ebm_without_mcmc_upstream.py --extra-em-seeds 1,2   # energy matching at more seeds, added to the JSON
"""
import argparse, json, math, os, platform, statistics, sys, time
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path: sys.path.insert(0, HERE)
import quality as Q
import ebm_without_mcmc as B

from torchebm_nb.losses import EquilibriumMatchingLoss, EnergyMatchingLoss
from torchebm_nb.models import EqMEnergy
from torchebm_nb.couplings import ExactOTCoupling
from torchebm_nb.samplers.gradient_descent import GradientDescentSampler
from torchebm_nb.samplers.flow import FlowSampler
from torchebm_nb.diagnostics import grid_kl

import torchebm
from torchebm.losses import EquilibriumMatchingLoss as UpEqM, EnergyMatchingLoss as UpEM
from torchebm.core import BaseModel as UpBaseModel, BaseCoupling as UpBaseCoupling
from torchebm.core.base_coupling import CouplingResult as UpCouplingResult

TIMING = dict(blocks=9, eqm_steps=100, em_warmup_steps=10, em_joint_steps=4)   # EqM steps are short: more per block
QUICK = dict(eqm_iters=300, em_warmup=60, em_joint=20, blocks=3)


class UpPotential(UpBaseModel):
    "Our network as an upstream `BaseModel` (upstream's Langevin sampler wants its own base class)."
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, x, **kw): return self.net(x, **kw)


class UpExactOT(UpBaseCoupling):
    "Our exact assignment (`ExactOTCoupling`) in upstream's coupling class, for the row that swaps the solver only."
    def __init__(self): super().__init__(); self.inner = ExactOTCoupling()
    def couple(self, x0, x1=None, *, generator=None, **kw):
        a, b = self.inner(x0, x1)
        return UpCouplingResult(a, b)


# ---------------------------------------------------------------------------------------------------------------------
# the losses, built the same way for both

def eqm_loss(impl, field, seed=0):
    kw = dict(energy_type="none", ct=B.EQM["ct"], ct_threshold=B.EQM["ct_threshold"], ct_multiplier=B.EQM["ct_multiplier"])
    if impl == "ours": return EquilibriumMatchingLoss(field, generator=torch.Generator().manual_seed(2000 + seed), **kw)
    torch.manual_seed(2000 + seed)
    return UpEqM(field, dtype=torch.float32, device="cpu", **kw)


def em_loss(impl, net, cfg, seed=0, coupling=None):
    kw = dict(lambda_cd=0.0, n_langevin_steps=cfg["n_langevin_steps"], langevin_dt=cfg["langevin_dt"],
              epsilon_max=cfg["epsilon_max"], tau_star=cfg["tau_star"],
              **{k: cfg[k] for k in B.EM_LOSS_EXTRA if k in cfg})
    if coupling is not None: kw["coupling"] = coupling
    if impl == "ours": return net, EnergyMatchingLoss(net, generator=torch.Generator().manual_seed(2000 + seed), **kw)
    torch.manual_seed(2000 + seed)
    V = UpPotential(net)
    return V, UpEM(V, dtype=torch.float32, device="cpu", **kw)


# ---------------------------------------------------------------------------------------------------------------------
# training (the loops of ebm_without_mcmc.py, the loss swapped)

def train_eqm(impl, iters, seed=0):
    data, net = Q.target(), Q.make_model(seed)
    field = B.GradField(net)
    lf = eqm_loss(impl, field, seed)
    opt = torch.optim.Adam(net.parameters(), lr=B.EQM["lr"])
    g_data, g_x0 = torch.Generator().manual_seed(1000 + seed), torch.Generator().manual_seed(3000 + seed)
    t0 = time.perf_counter()
    for _ in range(iters):
        x = data.sample(B.EQM["batch"], generator=g_data)
        loss = lf(x, x0=B.EQM["x0_scale"] * torch.randn(x.shape, generator=g_x0))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    net.eval()
    return field, time.perf_counter() - t0


def train_em(impl, cfg, seed=0, coupling=None):
    data, net = Q.target(), Q.make_model(seed)
    V, lf = em_loss(impl, net, cfg, seed, coupling)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sched = Q.make_lr_scheduler(opt, cfg["warmup"] + cfg["joint"], cfg.get("lr_schedule", "constant"))
    g_data, g_x0 = torch.Generator().manual_seed(1000 + seed), torch.Generator().manual_seed(3000 + seed)
    t0 = time.perf_counter()
    for it in range(cfg["warmup"] + cfg["joint"]):
        if it == cfg["warmup"]: lf.lambda_cd = cfg["lambda_cd"]
        x = data.sample(cfg["batch"], generator=g_data)
        loss = lf(x, x0=cfg["x0_scale"] * torch.randn(x.shape, generator=g_x0))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if sched is not None: sched.step()
    net.eval()
    return net, time.perf_counter() - t0


def eqm_figures(field, x_test, seed=5):
    z = B.EQM["x0_scale"] * torch.randn(B.N_TEST, 2, generator=torch.Generator().manual_seed(seed))
    gd = GradientDescentSampler(EqMEnergy(field, "implicit"), step_size=B.EQM_SAMPLERS["gd_step"]).sample(
        x=z.clone(), n_steps=B.EQM_SAMPLERS["gd_steps"])
    fl = FlowSampler(field, negate_velocity=True, integrator="euler").sample(x=z.clone(), n_steps=10)
    return {"w2_descent": B.w2(gd, x_test), "w2_flow_euler10": B.w2(fl, x_test)}


def em_figures(V, cfg, x_test):
    T = cfg["epsilon_max"]
    xs = B.generate_em(V, x0_scale=cfg["x0_scale"], epsilon_max=T, tau_star=cfg["tau_star"])
    return {"kl": grid_kl(Q.target(), B.Tempered(V, T), Q.LIM, Q.LIM, Q.RES), "w2_samples": B.w2(xs, x_test)}


# ---------------------------------------------------------------------------------------------------------------------
# step timing, interleaved

def time_steps(cfg, blocks, seed=0, log=print):
    """Median seconds per training step: ours, upstream, and upstream given our exact OT coupling (energy matching),
    timed in blocks whose order rotates (so no implementation always runs first or last)."""
    data = Q.target()
    g_data, g_x0 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)
    batch = lambda n: data.sample(n, generator=g_data)
    setups = {}
    for impl, coupling in (("ours", None), ("upstream", None), ("upstream_exact_ot", UpExactOT())):
        base = "ours" if impl == "ours" else "upstream"
        net_w, net_j = Q.make_model(seed), Q.make_model(seed)
        _, lw = em_loss(base, net_w, cfg, seed, coupling)
        _, lj = em_loss(base, net_j, cfg, seed, coupling); lj.lambda_cd = cfg["lambda_cd"]
        setups[impl] = {"em_warmup": (lw, net_w, cfg["batch"], cfg["x0_scale"], TIMING["em_warmup_steps"]),
                        "em_joint": (lj, net_j, cfg["batch"], cfg["x0_scale"], TIMING["em_joint_steps"])}
        if impl != "upstream_exact_ot":
            net_q = Q.make_model(seed)
            setups[impl]["eqm"] = (eqm_loss(base, B.GradField(net_q), seed), net_q, B.EQM["batch"], B.EQM["x0_scale"],
                                   TIMING["eqm_steps"])
    opts = {(i, k): torch.optim.Adam(s[1].parameters(), lr=1e-4) for i, v in setups.items() for k, s in v.items()}
    times = {key: [] for key in opts}
    impls = list(setups)
    for b in range(blocks + 1):                     # block 0 is a warm-up, not recorded
        for kind in ("eqm", "em_warmup", "em_joint"):
            for impl in impls[b % 3:] + impls[:b % 3]:
                if kind not in setups[impl]: continue
                lf, net, n, scale, steps = setups[impl][kind]
                xs = [batch(n) for _ in range(steps)]
                x0s = [scale * torch.randn(n, 2, generator=g_x0) for _ in range(steps)]
                opt = opts[(impl, kind)]
                t0 = time.perf_counter()
                for x, x0 in zip(xs, x0s):
                    loss = lf(x, x0=x0); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
                if b > 0: times[(impl, kind)].append((time.perf_counter() - t0) / steps)
    out = {}
    for kind in ("eqm", "em_warmup", "em_joint"):
        o = statistics.median(times[("ours", kind)])
        out[kind] = {"ours_ms": 1e3 * o, "ours_blocks_ms": [1e3 * v for v in times[("ours", kind)]]}
        for impl in ("upstream", "upstream_exact_ot"):
            if (impl, kind) not in times: continue
            u = statistics.median(times[(impl, kind)])
            out[kind].update({f"{impl}_ms": 1e3 * u, f"ratio_{impl}_over_ours": u / o,
                              f"{impl}_blocks_ms": [1e3 * v for v in times[(impl, kind)]]})
        log(f"step time {kind:10s} " + "  ".join(f"{k[:-3]} {v:8.2f} ms" for k, v in out[kind].items() if k.endswith("_ms") and "blocks" not in k))
    return out


# ---------------------------------------------------------------------------------------------------------------------

def run(quick=False, log=print):
    torch.set_num_threads(1)
    x_test = B.heldout()
    em_cfg = dict(B.EM)
    eqm_iters = QUICK["eqm_iters"] if quick else B.EQM["iters"]
    if quick: em_cfg.update(warmup=QUICK["em_warmup"], joint=QUICK["em_joint"])
    out = {"mode": "quick" if quick else "full", "torchebm": torchebm.__version__, "eqm_config": B.EQM,
           "em_config": em_cfg, "eqm": {}, "em": {}}
    for impl in ("ours", "upstream"):
        field, secs = train_eqm(impl, eqm_iters)
        out["eqm"][impl] = {**eqm_figures(field, x_test), "train_seconds": secs}
        log(f"EqM {impl:9s} {out['eqm'][impl]}")
    em_runs = [("ours", None, "ours"), ("upstream", UpExactOT(), "upstream_exact_ot")]
    if quick: em_runs.insert(1, ("upstream", None, "upstream"))   # its auction solver: ~1 s a step at batch 256
    for impl, coupling, name in em_runs:
        V, secs = train_em(impl, em_cfg, coupling=coupling)
        out["em"][name] = {**em_figures(V, em_cfg, x_test), "train_seconds": secs}
        log(f"EM  {name:9s} {out['em'][name]}")
    out["step_time"] = time_steps(em_cfg, QUICK["blocks"] if quick else TIMING["blocks"], log=log)
    out["env"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                  "machine": platform.machine()}
    return out


def format_table(res):
    e, m, s = res["eqm"], res["em"], res["step_time"]
    up = m.get("upstream", m["upstream_exact_ot"])
    rows = ["| figure | ours | TorchEBM 0.8.9 |", "|---|---|---|",
            f"| EqM: W2, descent 40 steps | {e['ours']['w2_descent']:.3f} | {e['upstream']['w2_descent']:.3f} |",
            f"| EqM: W2, FlowSampler Euler 10 steps | {e['ours']['w2_flow_euler10']:.3f} | {e['upstream']['w2_flow_euler10']:.3f} |",
            f"| energy matching: grid KL of exp(-V/0.15) | {m['ours']['kl']:.3f} | {m['upstream_exact_ot']['kl']:.3f} (our exact OT) |",
            f"| energy matching: W2 of samples | {m['ours']['w2_samples']:.3f} | {m['upstream_exact_ot']['w2_samples']:.3f} (our exact OT) |",
            f"| EqM training step (median ms) | {s['eqm']['ours_ms']:.2f} | {s['eqm']['upstream_ms']:.2f} (× {s['eqm']['ratio_upstream_over_ours']:.2f}) |"]
    for k, label in (("em_warmup", "energy matching warm-up step"), ("em_joint", "energy matching joint step")):
        rows.append(f"| {label} (median ms) | {s[k]['ours_ms']:.2f} | {s[k]['upstream_ms']:.2f} (× {s[k]['ratio_upstream_over_ours']:.2f}); "
                    f"with our exact OT {s[k]['upstream_exact_ot_ms']:.2f} (× {s[k]['ratio_upstream_exact_ot_over_ours']:.2f}) |")
    return "\n".join(rows)


def extra_em_seeds(path, seeds, log=print):
    "Energy matching of both implementations at more training seeds, added to an existing result file as `em_seeds`."
    torch.set_num_threads(1)
    res = json.load(open(path))
    cfg, x_test = res["em_config"], B.heldout()
    per = res.setdefault("em_seeds", {"0": {"ours": res["em"]["ours"], "upstream_exact_ot": res["em"]["upstream_exact_ot"]}})
    for seed in seeds:
        per[str(seed)] = {}
        for impl, coupling, name in (("ours", None, "ours"), ("upstream", UpExactOT(), "upstream_exact_ot")):
            V, secs = train_em(impl, cfg, seed=seed, coupling=coupling)
            per[str(seed)][name] = {**em_figures(V, cfg, x_test), "train_seconds": secs}
            log(f"EM seed {seed} {name:9s} {per[str(seed)][name]}")
    for name in ("ours", "upstream_exact_ot"):
        for k in ("kl", "w2_samples"):
            v = [per[s][name][k] for s in per]
            log(f"{name:18s} {k:10s} mean {statistics.mean(v):.3f} over seeds {sorted(per)}: {[round(x, 3) for x in v]}")
    with open(path, "w") as f: json.dump(res, f, indent=1)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred steps (a smoke test)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--extra-em-seeds", default=None, help="e.g. 1,2: add energy matching at these training seeds to --out")
    ap.add_argument("--step-times", action="store_true", help="only time the training steps again and replace them in --out")
    a = ap.parse_args(argv)
    if a.step_times:
        out = a.out or os.path.join(B.RESULTS, "ebm_without_mcmc_upstream.json")
        with open(out) as f: res = json.load(f)
        torch.set_num_threads(1)
        res["step_time"] = time_steps(res["em_config"], TIMING["blocks"])
        res["step_time_config"] = TIMING
        with open(out, "w") as f: json.dump(res, f, indent=1)
        print(format_table(res)); print(f"wrote {out}")
        return res
    if a.extra_em_seeds:
        out = a.out or os.path.join(B.RESULTS, "ebm_without_mcmc_upstream.json")
        return extra_em_seeds(out, [int(v) for v in a.extra_em_seeds.split(",")])
    t0 = time.perf_counter()
    res = run(a.quick)
    res["seconds"] = time.perf_counter() - t0
    print(format_table(res))
    out = a.out or os.path.join(B.RESULTS, "ebm_without_mcmc_upstream_quick.json" if a.quick else "ebm_without_mcmc_upstream.json")
    with open(out, "w") as f: json.dump(res, f, indent=1)
    print(f"wrote {out} ({res['seconds']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
