"""Class-conditional generation on scikit-learn's 8x8 digits: a guided flow and a conditional energy, judged by class.

Two class-conditional models of the 1,347 training digits (`torchebm_nb.datasets.load_digits`), both on the CLI's
`DigitsField` network (a `TimeConditionedMLP` on the 64 pixels joined by a learned label embedding, null class 10):

- a velocity field trained by flow matching with classifier-free-guidance label dropout (`cfg_dropout=0.1`), sampled
  with `FlowSampler` (10 midpoint steps) through `ClassifierFreeGuidance` at w = 0, 1, 2, 4 (and 1.5);
- the same flow matching with a small class-conditional `DiT` (8x8 images, patches of 2, width 64, 4 adaLN-Zero
  blocks; its label table's null row 10), the label dropout done by the loss (`class_dropout_prob=0`);
- a scalar energy E(x, y) = x . f(x, y), trained by equilibrium matching (`energy_type="dot"`, same label dropout),
  sampled per class from N(0, I) by gradient descent and by Langevin dynamics on `EqMEnergy(field, "dot")`, plain
  (w = 1) and guided (w = 2).

Every sample set asks for classes 0..9 in turn (45 digits per class). The judge is the JEM harness's
(`benchmarks/jem_digits.py`): a plain classifier trained on the training split; it reports the fraction of samples it
assigns to the requested class (class accuracy) and the Frechet distance of its 128 penultimate features of the samples
against those of the 450 test digits, of the samples as drawn and rounded to the data's 17 grey levels (as the
flow-matching digits page reports them; rounding also clips what guidance pushes past [-1, 1]). Results go to
`results/conditional_digits.json` and a per-class sample grid to `nbs/tutorials/conditional_digits.png`;
`nbs/tutorials/conditional_digits.ipynb` prints them.

    python benchmarks/conditional_digits.py [--quick] [--out PATH]
"""
import argparse, json, math, os, platform, sys, time
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path: sys.path.insert(0, HERE)
import jem_digits as J

from torchebm_nb.datasets import load_digits
from torchebm_nb.cli import DigitsField
from torchebm_nb.losses import FlowMatchingLoss, EquilibriumMatchingLoss
from torchebm_nb.models import ClassifierFreeGuidance, EqMEnergy, DiT
from torchebm_nb.samplers.flow import FlowSampler
from torchebm_nb.samplers.gradient_descent import GradientDescentSampler
from torchebm_nb.samplers.langevin_dynamics import LangevinDynamics

RESULTS = os.path.join(HERE, "results")
PICTURE = os.path.join(HERE, os.pardir, "nbs", "tutorials", "conditional_digits.png")
NULL = 10                                                   # the null class of the label table (classes 0..9)
FULL = dict(fm_steps=3000, eqm_steps=3000, batch=256, lr=2e-3, hidden=256, layers=3, cfg_dropout=0.1, seed=0,
            dit_steps=2000, dit_batch=128, dit_lr=1e-3, dit_hidden=64, dit_depth=4, dit_heads=4)
QUICK = dict(FULL, fm_steps=300, eqm_steps=300, batch=128, dit_steps=30)
GUIDANCE = (0.0, 1.0, 1.5, 2.0, 4.0)                        # w of the flow's sweep (the issue asks for 0, 1, 2, 4)
FLOW_STEPS = 10                                             # midpoint steps: 20 evaluations of the (guided) field
# the energy's samplers: (name, sampler kind, step size, steps, noise scale, guidance w). Descent time (step x steps)
# ~ 0.5 is where EqM's equilibria sit (longer descent over-sharpens, as ebm_without_mcmc_digits.py measures).
ENERGY = (("descent", "descent", 0.01, 50, 0.0, 1.0), ("descent, guided", "descent", 0.01, 50, 0.0, 2.0),
          ("Langevin", "langevin", 0.01, 50, 0.1, 1.0), ("Langevin, guided", "langevin", 0.01, 50, 0.1, 2.0))


def quantise(x):
    "Images rounded to the nearest of the data's 17 grey levels in [-1, 1] (clipped to the range)."
    return ((x + 1) * 8).round().clamp(0, 16) / 8 - 1


def train(loss_fn, model, x, y, steps, batch, lr, generator):
    "Adam on (image, label) minibatches with a cosine-decayed learning rate; returns the mean loss of the last 50 steps."
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=generator)
        loss = loss_fn(x[idx], y=y[idx])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses[-50:]) / len(losses[-50:])


def flow_samples(field, w, labels, seed):
    "Samples of the guided field u + w (c - u) for the requested `labels`, and the number of network evaluations."
    guided = ClassifierFreeGuidance(field, w, null_condition=NULL)
    fs = FlowSampler(guided, integrator="midpoint")
    x, d = fs.sample(len(labels), (1, 8, 8), FLOW_STEPS, y=labels, return_diagnostics=True,
                     generator=torch.Generator().manual_seed(seed))
    return x, 2 * d["nfe"] if w not in (0.0, 1.0) else d["nfe"]   # guidance doubles the batch (w = 0, 1: one half suffices)


def small_dit(cfg):
    "The tutorial's class-conditional DiT on 8x8 digits: patches of 2 (16 tokens), null class 10, no built-in label dropout."
    return DiT(input_size=8, patch_size=2, in_channels=1, hidden_size=cfg["dit_hidden"], depth=cfg["dit_depth"],
               num_heads=cfg["dit_heads"], num_classes=10, learn_sigma=False, class_dropout_prob=0.0)


def energy_samples(field, kind, eta, steps, noise, w, labels, seed):
    "Samples of the energy E(x, y) = x . f(x, y) (guided: (1 - w) E(x, null) + w E(x, y)) from N(0, I), per label."
    energy = EqMEnergy(field, "dot")
    if w != 1.0: energy = ClassifierFreeGuidance(energy, w, null_condition=NULL)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(labels), 1, 8, 8, generator=g)
    if kind == "descent": return GradientDescentSampler(energy, step_size=eta).sample(x=z, n_steps=steps, y=labels)
    return LangevinDynamics(energy, step_size=eta, noise_scale=noise).sample(x=z, n_steps=steps, y=labels, generator=g)


def make_judge(xtr, ytr, xte, yte):
    "The JEM harness's judge, its test accuracy, and `score(x, labels) -> (class accuracy, Frechet distance)`."
    judge = J.train_plain(xtr, ytr, **J.PLAIN)
    with torch.no_grad():
        acc = (judge(xte).argmax(-1) == yte).float().mean().item()
        f_test = J.penultimate(judge, xte)
    def score(x, labels):
        "(class accuracy, Frechet distance) of samples `x` drawn for `labels`; `score.rounded(x)`: the Frechet distance of `x` rounded to the 17 levels."
        with torch.no_grad():
            return ((judge(x).argmax(-1) == labels).float().mean().item(),
                    float(J.frechet_distance(J.penultimate(judge, x), f_test)))
    def rounded(x):
        with torch.no_grad(): return float(J.frechet_distance(J.penultimate(judge, quantise(x)), f_test))
    score.rounded = rounded
    return judge, acc, score


def class_grid(images, ax, title=None, per_class=10):
    "Samples `i` of class `i % 10` (as drawn here) in a grid: one row per class, `per_class` columns."
    imgs = images.detach().cpu().clamp(-1, 1)
    canvas = torch.ones(10 * 9 + 1, per_class * 9 + 1)
    for k in range(10):
        for j in range(per_class):
            canvas[1 + 9 * k: 9 * k + 9, 1 + 9 * j: 9 * j + 9] = imgs[k + 10 * j, 0]
    ax.imshow(canvas, cmap="gray_r", vmin=-1, vmax=1); ax.set_axis_off()
    if title: ax.set_title(title, fontsize=9)
    return ax


def run(quick=False, log=print):
    torch.set_num_threads(1)
    cfg = QUICK if quick else FULL
    xtr, ytr = load_digits("train")
    xte, yte = load_digits("test")
    t0 = time.perf_counter()
    _, judge_acc, score = make_judge(xtr, ytr, xte, yte)
    seconds = {"judge": time.perf_counter() - t0}
    labels = torch.arange(J.N_EVAL) % 10
    res = {"mode": "quick" if quick else "full", "config": cfg, "judge_test_accuracy": judge_acc,
           "reference": {"test_digits_accuracy": judge_acc}, "flow": {}, "energy": {}}
    # floors and ceiling of the Frechet distance at this sample size (as the flow-matching digits page)
    g = torch.Generator().manual_seed(0)
    res["reference"]["frechet_train_450"] = score(xtr[torch.randperm(len(xtr), generator=g)[:J.N_EVAL]], labels)[1]
    res["reference"]["frechet_uniform_noise"] = score(torch.rand(J.N_EVAL, 1, 8, 8, generator=g) * 2 - 1, labels)[1]

    torch.manual_seed(cfg["seed"])                          # the network's initial weights only
    field = DigitsField(cfg["hidden"], cfg["layers"], 10)
    g = torch.Generator().manual_seed(1000 + cfg["seed"])
    fm = FlowMatchingLoss(field, cfg_dropout=cfg["cfg_dropout"], null_condition=NULL, generator=g)
    t0 = time.perf_counter()
    res["flow_final_loss"] = train(fm, field, xtr, ytr, cfg["fm_steps"], cfg["batch"], cfg["lr"], g)
    seconds["flow_train"] = time.perf_counter() - t0
    grids = {}
    for w in GUIDANCE:
        t0 = time.perf_counter()
        x, nfe = flow_samples(field, w, labels, seed=1)
        acc, fd = score(x, labels)
        res["flow"][f"{w:g}"] = {"w": w, "class_accuracy": acc, "frechet": fd, "frechet_rounded": score.rounded(x),
                                 "nfe": nfe, "seconds": time.perf_counter() - t0}
        log(f"flow, w = {w:g}: class accuracy {acc:.3f}, Frechet {fd:.1f}, {nfe} evaluations")
        grids[f"flow, w = {w:g}"] = x

    torch.manual_seed(cfg["seed"])                          # the DiT: the same flow matching, a transformer backbone
    dit = small_dit(cfg)
    g = torch.Generator().manual_seed(3000 + cfg["seed"])
    fm = FlowMatchingLoss(dit, cfg_dropout=cfg["cfg_dropout"], null_condition=NULL, generator=g)
    t0 = time.perf_counter()
    res["dit_final_loss"] = train(fm, dit, xtr, ytr, cfg["dit_steps"], cfg["dit_batch"], cfg["dit_lr"], g)
    seconds["dit_train"] = time.perf_counter() - t0
    res["dit_params"] = sum(p.numel() for p in dit.parameters())
    res["dit"] = {}
    for w in GUIDANCE:
        x, nfe = flow_samples(dit, w, labels, seed=1)
        acc, fd = score(x, labels)
        res["dit"][f"{w:g}"] = {"w": w, "class_accuracy": acc, "frechet": fd, "frechet_rounded": score.rounded(x), "nfe": nfe}
        log(f"DiT, w = {w:g}: class accuracy {acc:.3f}, Frechet {fd:.1f}, {nfe} evaluations")
        grids[f"DiT, w = {w:g}"] = x

    torch.manual_seed(cfg["seed"])
    efield = DigitsField(cfg["hidden"], cfg["layers"], 10)
    g = torch.Generator().manual_seed(2000 + cfg["seed"])
    eqm = EquilibriumMatchingLoss(efield, energy_type="dot", cfg_dropout=cfg["cfg_dropout"], null_condition=NULL, generator=g)
    t0 = time.perf_counter()
    res["energy_final_loss"] = train(eqm, efield, xtr, ytr, cfg["eqm_steps"], cfg["batch"], cfg["lr"], g)
    seconds["energy_train"] = time.perf_counter() - t0
    for name, kind, eta, steps, noise, w in ENERGY:
        x = energy_samples(efield, kind, eta, steps, noise, w, labels, seed=7)
        acc, fd = score(x, labels)
        res["energy"][name] = {"sampler": kind, "step_size": eta, "steps": steps, "noise_scale": noise, "w": w,
                               "class_accuracy": acc, "frechet": fd, "frechet_rounded": score.rounded(x),
                               "nfe": steps * (1 if w == 1 else 2)}
        log(f"energy, {name}: class accuracy {acc:.3f}, Frechet {fd:.1f}")
        grids[f"energy, {name}"] = x
    res["seconds"] = seconds
    res["env"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    return res, grids


def save_picture(grids, res, path=PICTURE):
    "Per-class grids of the best guided flow, the plain conditional flow and the energy's descent samples."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    best = max(res["flow"].values(), key=lambda r: (r["class_accuracy"] >= 0.95, -r["frechet_rounded"]))
    dbest = max(res["dit"].values(), key=lambda r: (r["class_accuracy"] >= 0.95, -r["frechet_rounded"]))
    keys = [f"flow, w = 1", f"flow, w = {best['w']:g}", f"DiT, w = {dbest['w']:g}", "energy, descent"]
    keys = list(dict.fromkeys(keys))
    fig, axs = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.3))
    for ax, k in zip(axs, keys): class_grid(grids[k], ax, title=k)
    fig.tight_layout(); fig.savefig(path, dpi=80, bbox_inches="tight"); plt.close(fig)


def format_table(res):
    out = [f"class-conditional digits ({res['mode']}; judge test accuracy {res['judge_test_accuracy']:.3f})",
           f"{'model, sampler':<32} {'w':>4} {'class acc.':>10} {'Frechet':>8} {'rounded':>8} {'NFE':>5}"]
    for r in res["flow"].values():
        out.append(f"{'flow matching, midpoint x10':<32} {r['w']:4g} {r['class_accuracy']:10.3f} {r['frechet']:8.1f} {r['frechet_rounded']:8.1f} {r['nfe']:5d}")
    for r in res.get("dit", {}).values():
        out.append(f"{'DiT (' + str(res['config']['dit_hidden']) + ' x ' + str(res['config']['dit_depth']) + '), midpoint x10':<32} "
                   f"{r['w']:4g} {r['class_accuracy']:10.3f} {r['frechet']:8.1f} {r['frechet_rounded']:8.1f} {r['nfe']:5d}")
    for k, r in res["energy"].items():
        out.append(f"{'energy, ' + r['sampler'] + ' x' + str(r['steps']):<32} {r['w']:4g} {r['class_accuracy']:10.3f} "
                   f"{r['frechet']:8.1f} {r['frechet_rounded']:8.1f} {r['nfe']:5d}")
    ref = res["reference"]
    out.append(f"reference: 450 training digits Frechet {ref['frechet_train_450']:.1f}, uniform noise {ref['frechet_uniform_noise']:.0f}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 steps per MLP model, 30 for the DiT (a smoke test; the numbers are not the point)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res, grids = run(a.quick)
    res["seconds"]["total"] = time.perf_counter() - t0
    outdir = os.path.join(RESULTS, "quick") if a.quick else RESULTS
    os.makedirs(outdir, exist_ok=True)
    out = a.out or os.path.join(outdir, "conditional_digits.json")
    with open(out, "w") as f: json.dump(res, f, indent=1)
    if not a.quick and a.out is None: save_picture(grids, res)
    print(format_table(res))
    print(f"results in {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
