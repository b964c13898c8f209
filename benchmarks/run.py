"""Run all benchmarks: speed (library vs hand-written PyTorch loops) and quality (bars against exact densities).

    python benchmarks/run.py [--quick] [--skip-speed] [--skip-quality] [--jem]

Speed: runs bench_samplers.py, bench_losses.py and bench_extra.py (each in its own process, one CPU thread), then
prints one table from their JSON. Quality: benchmarks/quality.py (in process). Full results go to benchmarks/results/
(speed: samplers.json, losses.json, extra.json; quality.json; summary.json); `--quick` (for CI: fewer repeats,
600 training iterations, smaller sampler runs) writes to benchmarks/results/quick/ and leaves the full results alone.
`--jem` adds the JEM digits section (benchmarks/jem_digits.py: hybrid classifier/EBM on scikit-learn digits, about
two CPU minutes in full, 15 s in quick mode; writes jem_digits.json next to the other results).
Exit status 1 if a quality bar is missed in a full run (in quick mode the training bars are not expected to hold:
600 iterations leave every method near KL 0.45; the sampler bars are checked).
"""
import argparse, json, os, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)

SPEED = {  # script -> (full args, quick args, result file)
    "bench_samplers.py": (["--repeats", "7"], ["--repeats", "3"], "samplers.json"),
    "bench_losses.py": (["--repeats", "11", "--steps", "60"], ["--repeats", "5", "--steps", "10"], "losses.json"),
    "bench_extra.py": (["--repeats", "7", "--compile"], ["--repeats", "3"], "extra.json"),
}


def run_speed(quick, outdir):
    "Run each speed script in a subprocess; its JSON lands in `outdir`."
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for script, (full, fast, fname) in SPEED.items():
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            print(f"[speed] {script} missing: skipped"); continue
        dest = os.path.join(outdir, fname)
        args = [sys.executable, path, *(fast if quick else full)]
        help_text = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, env=env).stdout
        default = os.path.join(RESULTS, fname)
        backup = None
        if "--out" in help_text: args += ["--out", dest]
        elif dest != default and os.path.exists(default):   # the script always writes results/<fname>: keep the full one
            backup = default + ".bak"; shutil.copy2(default, backup)
        print(f"[speed] {' '.join(os.path.relpath(a) if a.startswith('/') else a for a in args[1:])}", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run(args, env=env)
        print(f"[speed] {script}: {time.perf_counter() - t0:.0f} s (exit {r.returncode})", flush=True)
        if "--out" not in help_text and dest != default and os.path.exists(default):
            shutil.move(default, dest)
            if backup: shutil.move(backup, default)


def speed_rows(outdir):
    "One list of rows {workload, library_ms, hand_ms, ratio, target} from the speed JSON files."
    rows, extra = [], {}
    for fname in ("samplers.json", "extra.json", "losses.json"):
        p = os.path.join(outdir, fname)
        if not os.path.exists(p): continue
        d = json.load(open(p))
        for r in d.get("rows", []):
            rows.append({k: r.get(k) for k in ("workload", "library_ms", "hand_ms", "ratio", "ratio_of_mins", "target")})
        for r in d.get("results", []):
            rows.append({"workload": f"{r['step']} training step, MLP 2-128-128-1, batch {d.get('batch', 256)}",
                         "library_ms": r["library_ms"], "hand_ms": r["hand_written_ms"], "ratio": r["ratio"],
                         "ratio_of_mins": min(r["library_all_ms"]) / min(r["hand_written_all_ms"]) if r.get("library_all_ms") else None,
                         "target": d.get("target_ratio")})
        for k in ("hmc_evaluations_per_iteration", "hmc_leapfrog_steps", "trajectory_memory", "torch_compile"):
            if k in d: extra[k] = d[k]
    return rows, extra


def format_speed(rows, extra):
    out = [f"{'workload':<52} {'lib ms':>9} {'hand ms':>9} {'ratio':>6} {'r(min)':>6} {'target':>6}"]
    for r in rows:
        rm = f"{r['ratio_of_mins']:6.3f}" if r.get("ratio_of_mins") else "     -"
        tg = f"{r['target']:6.2f}" if r.get("target") else "     -"
        out.append(f"{r['workload']:<52} {r['library_ms']:9.2f} {r['hand_ms']:9.2f} {r['ratio']:6.3f} {rm} {tg}")
    if "hmc_evaluations_per_iteration" in extra:
        out.append(f"HMC model evaluations per iteration: {extra['hmc_evaluations_per_iteration']:g} "
                   f"(L = {extra.get('hmc_leapfrog_steps', 10)}; target L + 1 or fewer)")
    if "trajectory_memory" in extra:
        m = extra["trajectory_memory"]
        out.append("trajectory memory: " + ", ".join(f"{k}={v}" for k, v in m.items()))
    c = extra.get("torch_compile")
    if c and "speedup" in c:
        out.append(f"torch.compile ({c['workload']}): library eager {c['library_eager_ms']:.1f} ms vs compiled step "
                   f"{c['compiled_step_ms']:.1f} ms: speed-up {c['speedup']:.2f}x (compile {c['compile_seconds']:.1f} s)")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI mode: a few minutes on 2 CPU cores")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--jem", action="store_true", help="also run the JEM digits quality section (benchmarks/jem_digits.py)")
    a = ap.parse_args(argv)
    outdir = os.path.join(RESULTS, "quick") if a.quick else RESULTS
    os.makedirs(outdir, exist_ok=True)
    t0 = time.perf_counter()
    summary = {"mode": "quick" if a.quick else "full"}
    if not a.skip_speed:
        ts = time.perf_counter()
        run_speed(a.quick, outdir)
        summary["speed_seconds"] = time.perf_counter() - ts
    rows, extra = speed_rows(outdir)
    summary["speed"] = {"rows": rows, **extra}
    ok = True
    if not a.skip_quality:
        import torch
        torch.set_num_threads(1)
        import quality
        ts = time.perf_counter()
        res = quality.run_quality(a.quick, keep_models=True)
        models, _ = res.pop("models"), res.pop("ula_samples")
        if not a.quick: quality.save_models(models)
        res["seconds"] = time.perf_counter() - ts
        with open(os.path.join(outdir, "quality.json"), "w") as f: json.dump(res, f, indent=1)
        summary["quality_seconds"], summary["bars"] = res["seconds"], res["bars"]
        checked = {k: b for k, b in res["bars"].items() if not (a.quick and k.endswith(".kl"))}
        ok = all(b["ok"] for b in checked.values())
    if a.jem:
        import torch
        torch.set_num_threads(1)
        import jem_digits
        jem, _, jem_buf = jem_digits.run(a.quick, log=None)
        with open(os.path.join(outdir, "jem_digits.json"), "w") as f: json.dump(jem, f, indent=1)
        if not a.quick: jem_digits.save_grid(jem_buf, os.path.join(outdir, "jem_digits_samples"))
        summary["jem_seconds"], summary["jem_bars"] = sum(jem["seconds"].values()), jem["bars"]
        if not a.quick: ok = ok and all(b["ok"] for b in jem["bars"].values())
    print("\n== speed (CPU medians; ratio = library / hand-written) ==")
    print(format_speed(rows, extra) if rows else "(no speed results)")
    if not a.skip_quality:
        print(f"\n== quality ({summary['mode']}) ==")
        print(quality.format_table(res, training_bars=not a.quick))
    if a.jem:
        print(f"\n== JEM digits ({summary['mode']}) ==")
        print(jem_digits.format_table(jem))
    summary["seconds"] = time.perf_counter() - t0
    with open(os.path.join(outdir, "summary.json"), "w") as f: json.dump(summary, f, indent=1)
    print(f"\ntotal {summary['seconds']:.0f} s; results in {os.path.relpath(outdir)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
