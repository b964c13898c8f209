"""Quality benchmarks: how well do the library's training methods and samplers recover a known density?

Target: the eight-Gaussians mixture (std 0.5/sqrt(2), radius 4/sqrt(2)) as an exact `GaussianMixtureModel`.

Training (fixed seeds, CPU): MLP energy 2-64-64-64-1 (SiLU), batch 256 of fresh exact samples per step, Adam 3e-3
(decayed by a cosine to 0 for the score-matching losses, see LR_SCHEDULE),
3000 iterations, by CD-10, persistent CD (buffer 10k, reinit 0.05), exact score matching, sliced score matching and
denoising score matching (sigma 0.3). Scored by grid KL(p_data || p_theta) and total variation on a 200x200 grid over
[-4.5, 4.5]^2 (DSM against the sigma-smoothed mixture, the density it is consistent for).

Samplers on the exact mixture energy: ULA (MMD^2 to exact samples, per-mode weights and spread ratios), MALA and HMC
acceptance; ESS/R-hat on a stuck configuration; log Z by AIS.

This module is the single home of the benchmark harness: `benchmarks/run.py` and the docs notebook
`nbs/explanations/benchmarks.ipynb` both import it.

    python benchmarks/quality.py [--quick] [--only cd,pcd,...] [--iters N] [--seed S] [--out PATH]
    python benchmarks/quality.py --seeds 0,1,2,3,4,5   # training KL over seeds only (quality_seeds.json)
"""
import argparse, json, math, os, platform, sys, time
import torch

from torchebm_nb.core import GaussianModel
from torchebm_nb.mixture import GaussianMixtureModel
from torchebm_nb.models import MLPEnergyModel
from torchebm_nb.samplers import LangevinDynamics, MALA
from torchebm_nb.samplers.hmc import HamiltonianMonteCarlo
from torchebm_nb.losses import (ContrastiveDivergence, PersistentContrastiveDivergence, ScoreMatching,
                                SlicedScoreMatching, DenoisingScoreMatching)
from torchebm_nb.diagnostics import (grid_kl, total_variation, mmd2_unbiased, mode_weights_and_spreads,
                                     effective_sample_size, split_rhat, annealed_importance_sampling)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

# ---------------------------------------------------------------------------------------------------------------------
# configuration: the spec of issue 8, and the bars (never loosened here; a miss is reported as a miss)

STD, RADIUS = 0.5 / math.sqrt(2), 4 / math.sqrt(2)
LIM, RES = (-4.5, 4.5), 200
TRAIN = dict(iters=3000, batch=256, lr=3e-3, hidden=(64, 64, 64), seed=0)
# lr (issue 17, seed sweep 0-19): Adam's peak learning rate, 3e-3 for every method (it was 1e-3). At 1e-3 some seeds
# learned a ring, not eight modes: the radial profile is fitted in the first few hundred steps; the angular structure
# (eight bumps 2.2 apart, std 0.35) needs first-layer features sharp enough and placed near the ring, which 1e-3 moves
# too slowly. At the seeds whose init put few features there the merged ring lasted to the end: grid KL 0.43 (CD-10
# seed 7, exact SM seed 8), 0.39 (sliced SM seed 8), flat from iteration 250 to 3000; every mode's mass 0.06-0.15 of
# the grid's, the rest spread along the ring between the modes; the energy barrier along the ring between neighbouring
# modes 0.1-0.4 nats where the target's is 4.2. At 3e-3 the same runs reach 0.06 / 0.01 / 0.01, and the sweep passes at
# every seed for every method. Smoother first-layer features (weights x0.5, as if initialised for inputs standardised
# to unit scale) made all of the failing runs rings (0.42-0.44).
# lr_schedule (issue 17): Adam's learning rate follows a cosine from `lr` to 0 over the run. With a constant 1e-3 the last
# iterate is one draw from the optimiser's noise: the per-mode masses of the learned density wander by +-50% between
# checkpoints 250 iterations apart (the score fixes each mode's shape but only weakly the energy gaps between modes), so
# DSM's final grid KL was 0.02-0.20 depending on where the run stopped (0.198 at seed 11, 0.290 at iteration 2250 of seed
# 17). The decay lets that drift settle (DSM seeds 0-9, 11, 17: worst 0.20 -> 0.03; exact SM seed 0: 0.21 -> 0.07). It is
# NOT applied to CD/PCD: measured with the cosine (at 1e-3), CD-10 gets 0.39/0.42 at seeds 0/11 (0.06/0.09 constant):
# the merged-ring value again; the decaying rate freezes the ring before the modes separate.
LR_SCHEDULE = {"cd": "constant", "pcd": "constant", "sm": "cosine", "ssm": "cosine", "dsm": "cosine"}
DSM_SIGMA = 0.3
# sampler settings inside the CD losses (k = 10, buffer and restart rate fixed by the spec). Measured (3000 iterations,
# Adam 1e-3, before the rate change above; grid KL, seeds as listed): CD-10 from N(0, I) noise: 14.9 (seed 0; short-run non-convergent: the chains never reach
# the modes, so exp(-E) is not the data density). CD-10 from the data batch, energy_reg 0: 0.09/0.10/0.15/0.24/0.05/0.24
# (seeds 0-5); energy_reg 0.05: 0.055-0.069 on seeds 0-5. PCD restarting from N(0, I): energy_reg 0.1 passes seeds 0
# and 1 only (0.14/0.10, then 0.27-0.49 on seeds 2-7), 0.03 and 0.3 are worse. PCD restarting from data: energy_reg 0:
# 0.46-2.0 (the energies drift), 0.01: 0.11-0.34, 0.03: 0.09-0.27, 0.05: 0.08-0.22 on seeds 0-9, 0.3: 0.48-0.50 (the
# penalty caps the depth of the modes). So both CD losses restart from data with energy_reg 0.05.
CD = dict(k=10, step_size=0.01, init="data", energy_reg=0.05)
PCD = dict(k=10, step_size=0.01, buffer_size=10_000, reinit_prob=0.05, init="data", energy_reg=0.05)
METHODS = ("cd", "pcd", "sm", "ssm", "dsm")
BARS = {  # metric -> (comparison, bar)
    "cd.kl": ("<", 0.25), "pcd.kl": ("<", 0.25), "sm.kl": ("<", 0.25), "ssm.kl": ("<", 0.35), "dsm.kl": ("<", 0.15),
    "ula.mmd2": ("<", 5e-4), "ula.mode_weight_min": (">=", 0.08), "ula.mode_weight_max": ("<=", 0.17),
    "ula.spread_ratio_min": (">=", 0.95), "ula.spread_ratio_max": ("<=", 1.10),
    "mala.acceptance": (">", 0.95), "hmc.acceptance": (">", 0.95),
    "rhat.stuck": (">", 1.1), "ais.abs_error": ("<", 0.1),
    "rhat.arviz_rel_diff_ess": ("<", 0.05), "rhat.arviz_rel_diff_rhat": ("<", 0.05),
}
LABELS = {"cd": "CD-10", "pcd": "PCD-10", "sm": "exact SM", "ssm": "sliced SM", "dsm": "DSM σ=0.3"}


def target(dtype=torch.float32):
    "The exact eight-Gaussians mixture."
    return GaussianMixtureModel.ring(8, RADIUS, STD, dtype=dtype)


def reference_density(method):
    "The density a method is consistent for: the data law, or for DSM the sigma-smoothed one."
    return target().smoothed(DSM_SIGMA) if method == "dsm" else target()


# ---------------------------------------------------------------------------------------------------------------------
# training

def make_model(seed=0, hidden=TRAIN["hidden"]):
    torch.manual_seed(seed)   # weight init only (nn.Linear draws from the global RNG); the training loop uses generators
    return MLPEnergyModel(2, hidden)


def make_loss(method, model, gen, cd=None, pcd=None):
    "The library loss object of `method`, drawing all its randomness from `gen`."
    if method == "cd":
        c = {**CD, **(cd or {})}
        return ContrastiveDivergence(model, LangevinDynamics(model, step_size=c["step_size"]), k=c["k"], init=c["init"],
                                     energy_reg=c["energy_reg"], generator=gen)
    if method == "pcd":
        c = {**PCD, **(pcd or {})}
        return PersistentContrastiveDivergence(model, LangevinDynamics(model, step_size=c["step_size"]), k=c["k"],
                                               buffer_size=c["buffer_size"], reinit_prob=c["reinit_prob"],
                                               init=c["init"], energy_reg=c["energy_reg"], generator=gen)
    if method == "sm": return ScoreMatching(model, method="exact", generator=gen)
    if method == "ssm": return SlicedScoreMatching(model, generator=gen)
    if method == "dsm": return DenoisingScoreMatching(model, sigma=DSM_SIGMA, generator=gen)
    raise ValueError(f"unknown method {method!r}; one of {METHODS}")


def make_lr_scheduler(opt, iters, schedule="constant"):
    "The learning-rate schedule of the protocol: cosine from the optimiser's lr to 0 over `iters` steps, or constant."
    if schedule == "cosine": return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters)
    if schedule in (None, "constant"): return None
    raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {schedule!r}")


def train(method, iters=TRAIN["iters"], seed=TRAIN["seed"], batch=TRAIN["batch"], lr=TRAIN["lr"],
          hidden=TRAIN["hidden"], eval_every=0, cd=None, pcd=None, log=None, lr_schedule=None):
    "Train an MLP energy on fresh exact samples; returns (model, info) with wall time, final loss and an optional KL curve."
    data, model = target(), make_model(seed, hidden)
    g_data, g_loss = torch.Generator().manual_seed(1000 + seed), torch.Generator().manual_seed(2000 + seed)
    loss_fn = make_loss(method, model, g_loss, cd, pcd)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = make_lr_scheduler(opt, iters, lr_schedule or LR_SCHEDULE[method])
    curve, t0 = [], time.perf_counter()
    for it in range(1, iters + 1):
        x = data.sample(batch, generator=g_data)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        if sched is not None: sched.step()
        if eval_every and (it % eval_every == 0 or it == iters):
            model.eval()
            curve.append((it, grid_kl(reference_density(method), model, LIM, LIM, RES)))
            if log: log(f"  {method} it {it}: KL {curve[-1][1]:.3f}")
    secs = time.perf_counter() - t0
    model.eval()
    return model, {"seconds": secs, "final_loss": float(loss.detach()), "curve": curve}


def evaluate(method, model):
    "Grid KL and TV of a trained model against the method's reference density."
    ref = reference_density(method)
    return {"kl": grid_kl(ref, model, LIM, LIM, RES), "tv": total_variation(ref, model, LIM, LIM, RES)}


# ---------------------------------------------------------------------------------------------------------------------
# samplers on the exact energy

def ula_check(n_chains=2000, n_steps=200, step_size=0.01, seed=0, n_ref=10_000):
    """ULA from N(0, 9I) on the exact mixture: unbiased MMD^2 to `n_ref` exact samples (median-heuristic bandwidths
    x 2^k, k = -3..2), per-mode weights and spread ratios. With 2000 chains and 10000 reference samples the MMD^2 of
    exact samples has a standard deviation of about 1.5e-4 (measured over seeds), so the bar 5e-4 is about 3 of them."""
    tgt = target()
    g = torch.Generator().manual_seed(seed)
    x0 = 3 * torch.randn(n_chains, 2, generator=g)
    t0 = time.perf_counter()
    x = LangevinDynamics(tgt, step_size=step_size).sample(x=x0, n_steps=n_steps, generator=g)
    secs = time.perf_counter() - t0
    ref = tgt.sample(n_ref, generator=g)
    ms = mode_weights_and_spreads(x, tgt.means, std=STD)
    return {"mmd2": float(mmd2_unbiased(x, ref)), "mode_weight_min": float(ms.weights.min()),
            "mode_weight_max": float(ms.weights.max()), "spread_ratio_min": float(ms.spread_ratio.min()),
            "spread_ratio_max": float(ms.spread_ratio.max()), "seconds": secs,
            "_samples": x, "_weights": ms.weights.tolist(), "_spread_ratio": ms.spread_ratio.tolist()}


def mh_checks(n_chains=2000, n_steps=200, burn_in=100, seed=0):
    "Acceptance of MALA (eps 0.01) and HMC (eps 0.1, L 10) on the exact mixture, started from exact samples."
    tgt = target()
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, sampler, steps, burn in (("mala", MALA(tgt, step_size=0.01), n_steps, burn_in),
                                       ("hmc", HamiltonianMonteCarlo(tgt, step_size=0.1, n_leapfrog_steps=10),
                                        max(n_steps // 4, 2), max(burn_in // 4, 1))):
        x0 = tgt.sample(n_chains, generator=g)
        t0 = time.perf_counter()
        _, diag = sampler.sample(x=x0, n_steps=steps, burn_in=burn, return_diagnostics=True, generator=g)
        out[name] = {"acceptance": float(diag["acceptance_rate"].mean()), "seconds": time.perf_counter() - t0}
    return out


def convergence_checks(n_chains=4, n_draws=1000, seed=0):
    """R-hat and ESS of MALA chains on the mixture. Well-mixed: chains started from exact samples of ONE mode at the
    origin-centred Gaussian; stuck: 4 chains started in 4 different modes of the eight-Gaussians mixture (barriers of
    about 30 nats: they never cross), so R-hat must flag them."""
    tgt = target()
    g = torch.Generator().manual_seed(seed)
    gauss = GaussianModel(torch.zeros(2), torch.eye(2) * STD ** 2)
    _, tr = MALA(gauss, step_size=0.02).sample(x=gauss.sample(n_chains, generator=g), n_steps=n_draws,
                                               return_trajectory=True, generator=g)
    x0 = tgt.means[[0, 2, 4, 6]].clone()
    _, stuck = MALA(tgt, step_size=0.02).sample(x=x0, n_steps=n_draws, return_trajectory=True, generator=g)
    out = {"mixed": float(split_rhat(tr).max()), "stuck": float(split_rhat(stuck).min()),
           "ess_mixed_min": float(effective_sample_size(tr).min()), "n_draws": n_chains * n_draws}
    try:   # arviz is a dev dependency: the reference implementation (04_diagnostics tests the agreement in depth)
        import arviz as az
        ours = {"ess": effective_sample_size(tr).double(), "rhat": split_rhat(tr).double()}
        ref = {"ess": torch.tensor([float(az.ess(tr[..., i].double().numpy(), method="bulk")) for i in range(2)]),
               "rhat": torch.tensor([float(az.rhat(tr[..., i].double().numpy(), method="rank")) for i in range(2)])}
        out["arviz_rel_diff_ess"] = float(((ours["ess"] - ref["ess"]) / ref["ess"]).abs().max())
        out["arviz_rel_diff_rhat"] = float(((ours["rhat"] - ref["rhat"]) / ref["rhat"]).abs().max())
    except ImportError: pass
    return out


def ais_check(n_chains=1000, n_temps=200, n_steps=1, step_size=0.05, seed=0):
    "log Z of the exact mixture (true value log 2pi) by AIS from N(0, 9I) with MALA transitions."
    tgt = target()
    base = GaussianModel(torch.zeros(2), 9 * torch.eye(2))
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    res = annealed_importance_sampling(tgt, base, n_chains=n_chains, n_temps=n_temps, n_steps=n_steps,
                                       step_size=step_size, generator=g, return_diagnostics=True)
    return {"log_z": float(res.log_z), "true": tgt.log_partition(), "abs_error": abs(float(res.log_z) - tgt.log_partition()),
            "se": float(res.log_z_se), "weights_ess": float(res.weights_ess), "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------------------------------
# bars and the whole run

def check_bars(flat):
    "Bars -> {metric: {value, bar, op, ok}} for every bar whose metric was measured."
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    return {k: {"value": flat[k], "op": op, "bar": b, "ok": bool(ops[op](flat[k], b))}
            for k, (op, b) in BARS.items() if k in flat}


QUICK = dict(iters=600, ula_chains=2000, ula_ref=10_000, mh_chains=500, mh_steps=80, rhat_draws=400, ais_chains=300, ais_temps=100)
FULL = dict(iters=TRAIN["iters"], ula_chains=2000, ula_ref=10_000, mh_chains=2000, mh_steps=200, rhat_draws=1000, ais_chains=1000, ais_temps=200)


def run_quality(quick=False, methods=METHODS, iters=None, log=print, keep_models=False, seed=TRAIN["seed"]):
    "Run everything; returns a JSON-able dict (plus `models`/`ula_samples` when `keep_models`)."
    cfg = dict(QUICK if quick else FULL)
    if iters is not None: cfg["iters"] = iters
    flat, detail, models = {}, {}, {}
    for m in methods:
        model, info = train(m, iters=cfg["iters"], seed=seed)
        ev = evaluate(m, model)
        flat[f"{m}.kl"], flat[f"{m}.tv"] = ev["kl"], ev["tv"]
        detail[m] = {**ev, "train_seconds": info["seconds"], "final_loss": info["final_loss"], "iters": cfg["iters"]}
        models[m] = model
        log(f"{LABELS[m]:10s} KL {ev['kl']:.3f}  TV {ev['tv']:.3f}  ({info['seconds']:.0f} s)")
    ula = ula_check(n_chains=cfg["ula_chains"], n_ref=cfg["ula_ref"])
    ula_samples = ula.pop("_samples")
    detail["ula"] = {**ula}
    for k in ("mmd2", "mode_weight_min", "mode_weight_max", "spread_ratio_min", "spread_ratio_max"): flat[f"ula.{k}"] = ula[k]
    log(f"ULA        MMD² {ula['mmd2']:.2e}  weights [{ula['mode_weight_min']:.3f}, {ula['mode_weight_max']:.3f}]  "
        f"spread [{ula['spread_ratio_min']:.3f}, {ula['spread_ratio_max']:.3f}]")
    mh = mh_checks(n_chains=cfg["mh_chains"], n_steps=cfg["mh_steps"], burn_in=cfg["mh_steps"] // 2)
    detail.update(mh)
    flat["mala.acceptance"], flat["hmc.acceptance"] = mh["mala"]["acceptance"], mh["hmc"]["acceptance"]
    log(f"MALA acc {mh['mala']['acceptance']:.3f}   HMC acc {mh['hmc']['acceptance']:.3f}")
    cv = convergence_checks(n_draws=cfg["rhat_draws"])
    detail["rhat"] = cv
    flat["rhat.stuck"] = cv["stuck"]
    for k in ("arviz_rel_diff_ess", "arviz_rel_diff_rhat"):
        if k in cv: flat[f"rhat.{k}"] = cv[k]
    log(f"R-hat mixed {cv['mixed']:.3f}  stuck {cv['stuck']:.2f}")
    ais = ais_check(n_chains=cfg["ais_chains"], n_temps=cfg["ais_temps"])
    detail["ais"] = ais
    flat["ais.abs_error"] = ais["abs_error"]
    log(f"AIS log Z {ais['log_z']:.4f} (true {ais['true']:.4f}, ± {ais['se']:.4f})")
    out = {"mode": "quick" if quick else "full", "config": {**cfg, **TRAIN, "iters": cfg["iters"], "seed": seed, "cd": CD, "pcd": PCD,
           "dsm_sigma": DSM_SIGMA, "lr_schedule": LR_SCHEDULE}, "metrics": flat, "detail": detail, "bars": check_bars(flat),
           "env": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                   "machine": platform.machine()}}
    if keep_models: out["models"], out["ula_samples"] = models, ula_samples
    return out


MODELS = os.path.join(RESULTS, "models")


def save_models(models, d=MODELS):
    "Save the trained energies' state dicts (about 35 kB each) for the docs figures."
    os.makedirs(d, exist_ok=True)
    for m, model in models.items(): torch.save(model.state_dict(), os.path.join(d, f"{m}.pt"))


def load_model(method, d=MODELS):
    "A trained energy saved by `save_models`, or None."
    p = os.path.join(d, f"{method}.pt")
    if not os.path.exists(p): return None
    model = make_model()
    model.load_state_dict(torch.load(p, weights_only=True))
    return model.eval()


def seed_sweep(seeds, methods=METHODS, log=print):
    "Grid KL of each training method over several seeds: the bars are judged at seed 0, this shows how much that matters."
    kl = {}
    for m in methods:
        kl[m] = [evaluate(m, train(m, seed=s)[0])["kl"] for s in seeds]
        log(f"{LABELS[m]:10s} " + " ".join(f"{v:.3f}" for v in kl[m]) + f"   max {max(kl[m]):.3f} (bar {BARS[m + '.kl'][1]})")
    return {"seeds": list(seeds), "iters": TRAIN["iters"], "kl": kl, "bars": {m: BARS[m + ".kl"][1] for m in methods},
            "cd": CD, "pcd": PCD, "lr": TRAIN["lr"], "lr_schedule": LR_SCHEDULE, "torch": torch.__version__}


def format_table(res, training_bars=True):
    "A plain-text table of the bars: metric, value, bar, pass/fail (training bars shown as n/a when not applicable)."
    rows = [f"{'metric':26s} {'value':>10s}  {'bar':>10s}  ok"]
    for k, b in res["bars"].items():
        ok = ("PASS" if b["ok"] else "MISS") if training_bars or not k.endswith(".kl") else "n/a (3000 it. bar)"
        rows.append(f"{k:26s} {b['value']:10.4g}  {b['op']:>2s}{b['bar']:8.4g}  {ok}")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 training iterations and smaller sampler runs (CI)")
    ap.add_argument("--only", default=",".join(METHODS), help="comma-separated training methods (default: all)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--seed", type=int, default=TRAIN["seed"], help="training seed (the bars are stated for seed 0)")
    ap.add_argument("--seeds", default=None, help="e.g. 0,1,2,3,4,5: only the training KL over these seeds "
                    "(writes benchmarks/results/quality_seeds.json)")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/quality[_quick].json)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.seeds:
        res = seed_sweep([int(v) for v in a.seeds.split(",")], [m for m in a.only.split(",") if m])
        res["seconds"] = time.perf_counter() - t0
        out = a.out or os.path.join(RESULTS, "quality_seeds.json")
        with open(out, "w") as f: json.dump(res, f, indent=1)
        print(f"wrote {out} ({res['seconds']:.0f} s)")
        return res
    res = run_quality(a.quick, [m for m in a.only.split(",") if m], a.iters, keep_models=True, seed=a.seed)
    models, _ = res.pop("models"), res.pop("ula_samples")
    if not a.quick and a.iters is None and a.seed == TRAIN["seed"] and a.out is None: save_models(models)
    res["seconds"] = time.perf_counter() - t0
    print(format_table(res, training_bars=not a.quick and a.iters is None))
    out = a.out or os.path.join(RESULTS, "quality_quick.json" if a.quick else "quality.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f: json.dump(res, f, indent=1)
    print(f"wrote {out} ({res['seconds']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
