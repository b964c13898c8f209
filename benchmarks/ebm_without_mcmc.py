"""Energies without MCMC in the training loop, judged on the quality benchmark's eight Gaussians.

(a) Equilibrium matching (EqM): the benchmark's network (`quality.make_model`, an MLP energy 2-64-64-64-1) trained so
    that its gradient field matches EqM's target (x0 - x1) c(t) (the implicit form, with the field = grad E), then
    sampled by descent (`GradientDescentSampler`, `NesterovSampler` through `EqMEnergy`) and by
    `FlowSampler(negate_velocity=True)`. Scored by the exact 2-Wasserstein distance of 2000 samples to 2000 held-out
    exact samples (assignment by scipy's `linear_sum_assignment`: a benchmark-only dependency), beside the number of
    gradient (field) evaluations each sampler needs.
(b) Energy matching as a density: exp(-V/T) normalised on the benchmark's 200x200 grid, grid KL to the exact mixture
    beside CD-10, PCD-10 and the score-matching losses of `quality.py` (retrained here, same harness, same seed), the
    training wall time of each, W2 of energy matching's generated samples, and the test log-likelihood (nats per point)
    of 2000 held-out points, log Z by annealed importance sampling, against the exact mixture's.

    python benchmarks/ebm_without_mcmc.py [--quick] [--out PATH]
"""
import argparse, json, math, os, platform, sys, time
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path: sys.path.insert(0, HERE)
import quality as Q

from torchebm_nb.core import BaseModel, GaussianModel
from torchebm_nb.losses import EquilibriumMatchingLoss, EnergyMatchingLoss
from torchebm_nb.models import EqMEnergy
from torchebm_nb.samplers import LangevinDynamics
from torchebm_nb.samplers.gradient_descent import GradientDescentSampler, NesterovSampler
from torchebm_nb.samplers.flow import FlowSampler
from torchebm_nb.schedulers import TemperatureScheduler
from torchebm_nb.diagnostics import grid_kl, annealed_importance_sampling

RESULTS = Q.RESULTS
N_TEST = 2000
EQM = dict(iters=3000, batch=256, lr=1e-3, ct="truncated", ct_threshold=0.8, ct_multiplier=4.0, x0_scale=2.0)
# sampler settings of the EqM field (chosen on seed 0 of the training; the gradient count is what each needs to stop)
EQM_SAMPLERS = dict(gd_step=0.02, gd_steps=40, tol=0.15, nesterov_step=0.01, momentum=0.9, max_steps=500,
                    flow_euler_steps=(10, 100))
# Energy matching: the loss's defaults (epsilon_max 0.15, tau_star 0.8, lambda_cd 2, trimmed/clamped CD term) with
# 50-step chains of dt 0.02 (the same virtual time as the default 200 x 0.01, a quarter of the cost), and noise
# x0 ~ N(0, X0_SCALE^2 I) given to the loss (x0=...): see the docstring of `train_em` for why.
EM = dict(warmup=500, joint=300, batch=256, lr=1e-3, n_langevin_steps=50, langevin_dt=0.02, epsilon_max=0.15,
          tau_star=0.8, lambda_cd=2.0, x0_scale=2.0)
EM_LOSS_EXTRA = ("noise_fraction", "cd_clamp", "cd_trim_fraction", "sigma", "flow_weight_cutoff", "energy_reg")  # other loss options a config may set
EM_DEFAULT = dict(EM, x0_scale=1.0)   # the library's recipe as documented (noise N(0, I)), same budget
# Tuned (measured on seed 0, see nbs/07f "What the density needs"): the learning rate decays (cosine, as the
# score-matching losses in quality.py), the contrastive term is 5x stronger and neither clamped nor trimmed, and the
# chains are 20 steps of 0.05 (same virtual time, 2.5x cheaper), which buys 600 joint steps in about the same time.
EM_TUNED = dict(EM, warmup=500, joint=600, n_langevin_steps=20, langevin_dt=0.05, lambda_cd=10.0, cd_clamp=None,
                cd_trim_fraction=0.0, lr_schedule="cosine")
# The contrastive phase as CD-10 (measured on seed 0, see nbs/07f "What the density needs"): lambda_cd = 1/epsilon_max
# makes the term CD's mean E(data) - mean E(negatives) on the Boltzmann energy E = V/epsilon_max, the chains are CD-10's
# (10 Langevin steps of E-step 0.01 = dt * epsilon_max from the data batch), `energy_reg` is CD's 0.05 on E, neither
# clamp nor trimming, constant learning rate, and the joint phase runs 2500 steps: every contrastive run measured sits
# on a plateau (grid KL ~0.45, the modes merged into a ring) for its first ~1500 steps, which 600 joint steps never left.
EM_REG = dict(EM, warmup=500, joint=2500, n_langevin_steps=10, langevin_dt=0.01 / 0.15, lambda_cd=1 / 0.15,
              cd_clamp=None, cd_trim_fraction=0.0, noise_fraction=0.0, energy_reg=0.05, lr_schedule="constant")
AIS = dict(n_chains=1000, n_temps=300, step_size=0.02, base_var=9.0)
QUICK = dict(iters=300, em_warmup=100, em_joint=30, ais_chains=200, ais_temps=100)


# ---------------------------------------------------------------------------------------------------------------------
# helpers

def heldout(n=N_TEST, seed=77):
    "Held-out exact samples of the mixture (never seen in training: training draws from other generators)."
    return Q.target().sample(n, generator=torch.Generator().manual_seed(seed))


def w2(a, b):
    "Exact 2-Wasserstein distance between two equal-size point clouds (optimal assignment on squared distances)."
    from scipy.optimize import linear_sum_assignment   # benchmark-only dependency
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(a).all(): return float("inf")
    c = torch.cdist(a, b).square().numpy()
    r, k = linear_sum_assignment(c)
    return float(math.sqrt(c[r, k].mean()))


class GradField(nn.Module):
    "The gradient of a scalar energy network as a (time-free) vector field `f(x, t) = grad E(x)`: EqM with an energy."
    def __init__(self, energy): super().__init__(); self.energy = energy
    def forward(self, x, t=None):
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            g, = torch.autograd.grad(self.energy(xg).sum(), xg, create_graph=create)
        return g


class Tempered(BaseModel):
    "The Boltzmann energy V/T of a potential V."
    def __init__(self, V, T): super().__init__(); self.V, self.T = V, T
    def forward(self, x): return self.V(x) / self.T


def test_loglik(energy, x_test, seed=0, **ais):
    "Mean log-density (nats) of `x_test` under exp(-energy)/Z, log Z by AIS from N(0, base_var I); with its AIS s.e."
    c = {**AIS, **ais}
    base = GaussianModel(torch.zeros(2), c["base_var"] * torch.eye(2))
    res = annealed_importance_sampling(energy, base, n_chains=c["n_chains"], n_temps=c["n_temps"], n_steps=1,
                                       step_size=c["step_size"], generator=torch.Generator().manual_seed(seed),
                                       return_diagnostics=True)
    with torch.no_grad(): e = energy(x_test).double()
    return {"loglik": float(-e.mean() - res.log_z), "log_z": float(res.log_z), "log_z_se": float(res.log_z_se),
            "weights_ess": float(res.weights_ess)}


def grid_loglik(energy, x_test, lim=Q.LIM, res=Q.RES):
    "The same log-likelihood with Z from the 200x200 grid (a cross-check of AIS; the grid misses mass outside the window)."
    xs = torch.linspace(lim[0], lim[1], res)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    with torch.no_grad():
        e = energy(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).double()
        et = energy(x_test).double()
    h = float(xs[1] - xs[0])
    log_z = torch.logsumexp(-e, 0) + 2 * math.log(h)
    return float(-et.mean() - log_z)


# ---------------------------------------------------------------------------------------------------------------------
# (a) equilibrium matching

def train_eqm(iters=EQM["iters"], seed=0, log=print, x0_scale=None):
    """EqM on fresh exact samples with the benchmark's network as the energy; returns (field, info). The noise is
    N(0, x0_scale^2 I) (given to the loss as `x0=`): with N(0, I) no path ever passes outside the ring, the field
    there is extrapolated, and descent runs past the modes to infinity (measured: W2 > 5 after 120 steps)."""
    x0_scale = EQM["x0_scale"] if x0_scale is None else x0_scale
    data, net = Q.target(), Q.make_model(seed)
    field = GradField(net)
    loss_fn = EquilibriumMatchingLoss(field, energy_type="none", ct=EQM["ct"], ct_threshold=EQM["ct_threshold"],
                                      ct_multiplier=EQM["ct_multiplier"], generator=torch.Generator().manual_seed(2000 + seed))
    opt = torch.optim.Adam(net.parameters(), lr=EQM["lr"])
    g_data, g_x0, t0 = torch.Generator().manual_seed(1000 + seed), torch.Generator().manual_seed(3000 + seed), time.perf_counter()
    for it in range(iters):
        x = data.sample(EQM["batch"], generator=g_data)
        loss = loss_fn(x, x0=x0_scale * torch.randn(x.shape, generator=g_x0))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    secs = time.perf_counter() - t0
    net.eval()
    log(f"EqM: {iters} steps in {secs:.1f} s, final loss {float(loss.detach()):.3f}")
    return field, {"seconds": secs, "iters": iters, "final_loss": float(loss.detach())}


def eqm_samplers(field, x_test, n=N_TEST, seed=5, cfg=EQM_SAMPLERS):
    "W2 to held-out data and gradient evaluations per sample, for each way of sampling the EqM field."
    z = EQM["x0_scale"] * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))   # the training noise
    adapter, rows = EqMEnergy(field, "implicit"), {}
    def timed(fn):
        t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0
    x, s = timed(lambda: GradientDescentSampler(adapter, step_size=cfg["gd_step"]).sample(x=z.clone(), n_steps=cfg["gd_steps"]))
    rows[f"descent η={cfg['gd_step']}, {cfg['gd_steps']} steps"] = dict(w2=w2(x, x_test), grad_evals=cfg["gd_steps"], seconds=s, _x=x)
    for name, sampler in ((f"descent η={cfg['gd_step']}, tol {cfg['tol']}", GradientDescentSampler(adapter, step_size=cfg["gd_step"], tol=cfg["tol"])),
                          (f"Nesterov η={cfg['nesterov_step']}, μ={cfg['momentum']}, tol {cfg['tol']}",
                           NesterovSampler(adapter, step_size=cfg["nesterov_step"], momentum=cfg["momentum"], tol=cfg["tol"]))):
        (x, d), s = timed(lambda: sampler.sample(x=z.clone(), n_steps=cfg["max_steps"], return_diagnostics=True))
        k = d["n_steps_taken"].double()
        # each step of a live chain is one field evaluation, plus the final check that stops it
        rows[name] = dict(w2=w2(x, x_test), grad_evals=float(k.mean() + d["converged"].double().mean()),
                          grad_evals_max=float(k.max() + 1), converged=float(d["converged"].double().mean()), seconds=s, _x=x)
    for steps in cfg["flow_euler_steps"]:
        fs = FlowSampler(field, negate_velocity=True, integrator="euler")
        x, s = timed(lambda: fs.sample(x=z.clone(), n_steps=steps))
        rows[f"FlowSampler Euler, {steps} steps"] = dict(w2=w2(x, x_test), grad_evals=fs.nfe, seconds=s, _x=x)
    fs = FlowSampler(field, negate_velocity=True)   # dopri5, adaptive
    x, s = timed(lambda: fs.sample(x=z.clone()))
    rows["FlowSampler dopri5 (adaptive)"] = dict(w2=w2(x, x_test), grad_evals=fs.nfe, seconds=s, _x=x)
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# (b) energy matching as a density

def generate_em(V, n=N_TEST, seed=9, x0_scale=EM["x0_scale"], epsilon_max=EM["epsilon_max"], tau_star=EM["tau_star"]):
    "One tempered sweep (virtual time 0 -> 1, 100 Langevin steps of 0.01) from the training noise N(0, x0_scale^2 I)."
    sweep = TemperatureScheduler(epsilon_max, tau_star, n_steps=100)
    x0 = x0_scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return LangevinDynamics(V, step_size=0.01, noise_scale=sweep).sample(x=x0, n_steps=100,
                                                                        generator=torch.Generator().manual_seed(seed + 1))


def train_em(cfg=EM, seed=0, log=print):
    """Energy matching with the benchmark's network: `warmup` steps of OT flow matching (lambda_cd = 0), then `joint`
    steps with the contrastive term. The noise the loss transports is N(0, x0_scale^2 I), passed as `x0=`: with the
    standard normal (x0_scale 1) the flow term only ever sees the inside of the ring, V keeps falling beyond it and
    exp(-V/T) puts its mass in the window's corners (grid KL 16 after the warm-up); noise that covers the window
    (scale 2: 3 sigma reaches the window's edge [-4.5, 4.5]^2) makes -grad V point inwards outside the ring too."""
    data, V = Q.target(), Q.make_model(seed)
    extra = {k: cfg[k] for k in EM_LOSS_EXTRA if k in cfg}
    lf = EnergyMatchingLoss(V, lambda_cd=0.0, n_langevin_steps=cfg["n_langevin_steps"], langevin_dt=cfg["langevin_dt"],
                            epsilon_max=cfg["epsilon_max"], tau_star=cfg["tau_star"],
                            generator=torch.Generator().manual_seed(2000 + seed), **extra)
    opt = torch.optim.Adam(V.parameters(), lr=cfg["lr"])
    sched = Q.make_lr_scheduler(opt, cfg["warmup"] + cfg["joint"], cfg.get("lr_schedule", "constant"))
    g_data, g_x0 = torch.Generator().manual_seed(1000 + seed), torch.Generator().manual_seed(3000 + seed)
    t0, info = time.perf_counter(), {}
    for it in range(cfg["warmup"] + cfg["joint"]):
        if it == cfg["warmup"]:
            info["warmup_seconds"] = time.perf_counter() - t0
            V.eval(); info["warmup_kl"] = grid_kl(Q.target(), Tempered(V, cfg["epsilon_max"]), Q.LIM, Q.LIM, Q.RES); V.train()
            t0 = time.perf_counter() - info["warmup_seconds"]   # the evaluation is not training time
            lf.lambda_cd = cfg["lambda_cd"]
        x = data.sample(cfg["batch"], generator=g_data)
        x0 = cfg["x0_scale"] * torch.randn(x.shape, generator=g_x0)
        loss = lf(x, x0=x0)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if sched is not None: sched.step()
    info["seconds"] = time.perf_counter() - t0
    V.eval()
    log(f"energy matching (x0 scale {cfg['x0_scale']}): {cfg['warmup']} + {cfg['joint']} steps in {info['seconds']:.1f} s "
        f"(warm-up KL {info.get('warmup_kl', float('nan')):.3f})")
    return V, info


def evaluate_density(energy, x_test, seed=0, **ais):
    "Grid KL and TV, AIS and grid test log-likelihoods of exp(-energy)."
    ev = Q.evaluate("cd", energy)       # "cd": against the exact mixture
    return {**ev, **test_loglik(energy, x_test, seed=seed, **ais), "loglik_grid": grid_loglik(energy, x_test)}


# ---------------------------------------------------------------------------------------------------------------------
# the whole run

def run(quick=False, log=print, keep=False):
    x_test = heldout()
    tgt = Q.target()
    with torch.no_grad():
        exact_ll = float(tgt.log_prob(x_test).double().mean())
    floor = w2(tgt.sample(N_TEST, generator=torch.Generator().manual_seed(78)), x_test)
    log(f"exact mixture: test log-likelihood {exact_ll:.4f} nats; W2 of 2000 exact samples to the held-out set {floor:.4f}")
    ais_kw = dict(n_chains=QUICK["ais_chains"], n_temps=QUICK["ais_temps"]) if quick else {}
    out = {"mode": "quick" if quick else "full", "n_test": N_TEST, "exact": {"loglik": exact_ll, "w2_exact_samples": floor}}
    # (a)
    field, info = train_eqm(QUICK["iters"] if quick else EQM["iters"], log=log)
    rows = eqm_samplers(field, x_test)
    out["eqm"] = {"train": info, "config": EQM, "samplers": {k: {a: b for a, b in v.items() if a != "_x"} for k, v in rows.items()}}
    # (b)
    dens, models = {}, {}
    for m in Q.METHODS:
        model, tinfo = Q.train(m, iters=QUICK["iters"] if quick else Q.TRAIN["iters"])
        dens[m] = {**evaluate_density(model, x_test, **ais_kw), "train_seconds": tinfo["seconds"],
                   "iters": QUICK["iters"] if quick else Q.TRAIN["iters"]}
        models[m] = model
        log(f"{Q.LABELS[m]:10s} KL {dens[m]['kl']:.3f}  loglik {dens[m]['loglik']:.3f}  ({tinfo['seconds']:.1f} s)")
    em_out = {}
    for name, cfg in (("em", EM), ("em_default", EM_DEFAULT), ("em_tuned", EM_TUNED), ("em_reg", EM_REG)):
        if quick: cfg = dict(cfg, warmup=QUICK["em_warmup"], joint=QUICK["em_joint"])
        V, einfo = train_em(cfg, log=log)
        T = cfg["epsilon_max"]
        ev = evaluate_density(Tempered(V, T), x_test, **ais_kw)
        xs = generate_em(V, x0_scale=cfg["x0_scale"])
        ev.update({f"kl_T{t}": grid_kl(tgt, Tempered(V, t), Q.LIM, Q.LIM, Q.RES) for t in (0.1, 0.25)})
        em_out[name] = {**ev, "temperature": T, "w2_samples": w2(xs, x_test), "train_seconds": einfo["seconds"],
                        "warmup_seconds": einfo["warmup_seconds"], "warmup_kl": einfo["warmup_kl"], "config": cfg}
        models[name], models[name + "_samples"] = V, xs
        log(f"{name:10s} KL {ev['kl']:.3f}  loglik {ev['loglik']:.3f}  W2 {em_out[name]['w2_samples']:.3f}")
    dens.update(em_out)
    out["density"] = dens
    out["env"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                  "machine": platform.machine()}
    if keep: out["_models"], out["_eqm_samples"] = {**models, "eqm_field": field}, rows
    return out


LABELS = {**Q.LABELS, "em": "energy matching (x0 ~ N(0, 4I))", "em_default": "energy matching (x0 ~ N(0, I))",
          "em_tuned": "energy matching, tuned (N(0, 4I))",
          "em_reg": "energy matching, CD-10 phase (N(0, 4I))"}


def format_tables(res):
    ex = res["exact"]
    a = [f"(a) EqM on eight Gaussians: W2 to {res['n_test']} held-out points (exact samples: {ex['w2_exact_samples']:.3f})",
         f"{'sampler':44s} {'W2':>7s} {'grad evals':>11s} {'seconds':>8s}"]
    for k, v in res["eqm"]["samplers"].items():
        a.append(f"{k:44s} {v['w2']:7.3f} {v['grad_evals']:11.1f} {v['seconds']:8.2f}")
    b = [f"(b) densities: grid KL / TV on 200x200, test log-likelihood (nats; exact mixture {ex['loglik']:.3f}), training time",
         f"{'method':34s} {'KL':>7s} {'TV':>6s} {'LL (AIS)':>9s} {'± se':>6s} {'LL grid':>8s} {'W2':>6s} {'train s':>8s}"]
    for k, v in res["density"].items():
        w = f"{v['w2_samples']:6.3f}" if "w2_samples" in v else f"{'':6s}"
        b.append(f"{LABELS[k]:34s} {v['kl']:7.3f} {v['tv']:6.3f} {v['loglik']:9.3f} {v['log_z_se']:6.3f} "
                 f"{v['loglik_grid']:8.3f} {w} {v['train_seconds']:8.1f}")
    return "\n".join(a) + "\n\n" + "\n".join(b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred steps of everything (a smoke test)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(a.quick)
    res["seconds"] = time.perf_counter() - t0
    print(format_tables(res))
    out = a.out or os.path.join(RESULTS, "ebm_without_mcmc_quick.json" if a.quick else "ebm_without_mcmc.json")
    with open(out, "w") as f: json.dump(res, f, indent=1)
    print(f"wrote {out} ({res['seconds']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
