"""Run upstream TorchEBM 0.8.9's own test suite against torchebm_nb through a name-only mapping.

A benchmark-style compatibility check (issue 18), not part of `nbdev_test`. It answers: how much of
TorchEBM's public test suite passes when every `torchebm` name is replaced by torchebm_nb's object of
the same name?

What it does
1. Gets upstream's source tree: `--source DIR`, or the 0.8.9 source distribution, downloaded once with
   `pip download torchebm==0.8.9 --no-binary :all: --no-deps` into `--cache`
   (default `~/.cache/torchebm_nb_upstream`) and extracted there.
2. Gets upstream's tests: `--tests DIR` (an extracted `tests/` folder, for offline use), else the
   `tests/` of the source distribution, else `$TORCHEBM_UPSTREAM_TESTS`. TorchEBM 0.8.9's sdist prunes
   its `tests/` (MANIFEST.in), so in practice pass `--tests`.
3. Generates a package `torchebm` in a temporary folder: one module per upstream module, each holding
   only `from torchebm_nb.<where> import <Name>` lines for the names upstream's module exports (read
   with `ast`: `__all__`, top-level definitions, from-imports, plus every name the tests import or patch
   from it) that torchebm_nb has under the same name (the module that defines the object is preferred),
   and `__version__`. No code with behaviour of its own. A name we lack is a placeholder whose first use
   raises the very ImportError its import would have raised (so one absent name fails only the tests
   that use it, not its whole test module); `--absent-at-import` leaves such names out instead.
4. Runs pytest on a copy of the tests in a subprocess: `PYTHONPATH=<mapping>`, plugin autoloading off,
   `-p no:cacheprovider`, `-m "not examples"` (upstream's own default; its multi-process `distributed`
   tests are deselected too unless `--distributed`, and count as skipped), a meta-path guard so that
   `torchebm` can only come from the mapping (the run fails loudly if the installed upstream package
   leaks in), and a per-test time limit (`--timeout`, SIGALRM, default 30 s). Upstream's CUDA tests
   skip themselves on a machine without CUDA, as upstream configures them.
5. Classifies every test: passed / failed / error / skipped / n/a / deliberate / upstream fails.
   *n/a*: the test needs a `torchebm` name we do not have (ImportError or AttributeError on a
   `torchebm` module, at collection or at call time, or a `mock.patch` target inside one).
   *deliberate*: the test id matches a line of `--differences` (default `tools/upstream_deliberate.txt`;
   lines `TEST_ID_OR_GLOB  # reason`, `*` matches anything, brackets are literal): we differ on purpose.
   *upstream fails*: the test does not pass for us and fails on upstream 0.8.9 itself too. For this the
   suite is also run once against the installed upstream package (a baseline, cached in `--cache`;
   `--no-baseline` skips it), which also gives the full list of test ids, so that a module that fails
   to import under the mapping still counts all its tests.
6. Prints a per-module table and writes `benchmarks/results/upstream_tests.json` (`--out`): per-module
   counts, totals, the mapping's missing names and every non-passing test id with its category, its
   cause (a short grouping key) and a one-line reason.

Usage (from the repository root, with the project's virtual environment active)::

    OMP_NUM_THREADS=1 nice python tools/upstream_tests.py --tests /path/to/torchebm/tests
    python tools/upstream_tests.py --tests T --only samplers/test_hmc.py --out /tmp/hmc.json
    python tools/upstream_tests.py --tests T --keep /tmp/ut   # keep the mapping and the pytest log

Requires pytest (`pip install pytest`); the baseline needs `torchebm==0.8.9` installed (without it the
run still works, with no *upstream fails* category). On one core the first run takes about 5 minutes
(download, baseline); later runs about 1 minute.
"""
from __future__ import annotations

import argparse, ast, hashlib, importlib, json, os, pkgutil, re, shutil, signal, subprocess, sys, tarfile
import tempfile, time
from collections import Counter, defaultdict
from pathlib import Path

VERSION = "0.8.9"
BASELINE_REV = 2          # bump when the way the suite is run changes (invalidates cached baselines)
ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("passed", "failed", "error", "skipped", "n/a", "deliberate", "upstream fails")


# ---------------------------------------------------------------------------------------------- sources
def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def upstream_source(args) -> Path:
    "The folder of upstream's `torchebm` package (its `__init__.py` inside)."
    if args.source:
        p = Path(args.source).expanduser().resolve()
        if (p / "torchebm" / "__init__.py").exists(): p = p / "torchebm"
        if not (p / "__init__.py").exists(): sys.exit(f"--source {p}: no torchebm package there")
        return p
    cache = Path(args.cache).expanduser(); cache.mkdir(parents=True, exist_ok=True)
    tree = cache / f"torchebm-{args.version}"
    if not (tree / "torchebm" / "__init__.py").exists():
        sdist = cache / f"torchebm-{args.version}.tar.gz"
        if not sdist.exists():
            print(f"downloading torchebm=={args.version} source distribution into {cache} ...", flush=True)
            for extra in (["--no-build-isolation"], []):
                try:
                    _run([sys.executable, "-m", "pip", "download", f"torchebm=={args.version}", "--no-binary", ":all:",
                          "--no-deps", *extra, "-d", str(cache)])
                    break
                except subprocess.CalledProcessError: pass
            else:                                # offline: an installed upstream package has the same source tree
                import importlib.util
                spec = importlib.util.find_spec("torchebm")          # locates it without importing it
                if spec is None or not spec.submodule_search_locations:
                    sys.exit(f"cannot download torchebm=={args.version}; pass --source DIR (upstream's package folder)")
                print(f"download failed: reading names from the installed package {spec.origin}", file=sys.stderr)
                return Path(spec.origin).parent
        with tarfile.open(sdist) as tf:
            top = f"torchebm-{args.version}/"
            members = [m for m in tf.getmembers() if m.name.startswith(top) and ".." not in m.name
                       and (m.isfile() or m.isdir())]
            try: tf.extractall(cache, members=members, filter="data")
            except TypeError: tf.extractall(cache, members=members)     # Python without extraction filters
    return tree / "torchebm"


def upstream_tests_dir(args, src: Path) -> Path:
    for cand in (args.tests, src.parent / "tests", os.environ.get("TORCHEBM_UPSTREAM_TESTS")):
        if cand and (Path(cand) / "conftest.py").exists(): return Path(cand).expanduser().resolve()
    sys.exit(f"no upstream tests found: TorchEBM {args.version}'s source distribution prunes tests/; "
             "pass --tests DIR (an extracted tests/ folder of the same release) or set TORCHEBM_UPSTREAM_TESTS")


# ----------------------------------------------------------------------------------- upstream's names
def _literal_names(node):
    "Strings of a list/tuple literal, or of `a + b` of such literals."
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_names(node.left) + _literal_names(node.right)
    return []


def upstream_modules(src: Path) -> dict[str, set[str]]:
    "Every module of upstream's package -> the names it offers its users."
    mods = {}
    for f in sorted(src.rglob("*.py")):
        rel = f.relative_to(src.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__": parts = parts[:-1]
        name = ".".join(parts)
        tree = ast.parse(f.read_text(encoding="utf-8"))
        names, alls = set(), []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        if t.id == "__all__": alls += _literal_names(node.value)
                        else: names.add(t.id)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__":
                alls += _literal_names(node.value)
            elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "torchebm"):
                names.update(a.asname or a.name for a in node.names if a.name != "*")   # re-exports, not typing/torch
        mods[name] = {n for n in names if not n.startswith("_")} | set(alls)
    return mods


def names_used_by_tests(tests: Path) -> dict[str, set[str]]:
    "`torchebm` module -> names the tests import from it or reach as `torchebm.a.b.Name` (incl. patch targets)."
    used = defaultdict(set)
    dotted = re.compile(r"\btorchebm(?:\.\w+)+")
    for f in tests.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        try: tree = ast.parse(text)
        except SyntaxError: continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torchebm":
                used[node.module].update(a.name for a in node.names if a.name != "*")
        for m in dotted.finditer(text):
            parts = m.group(0).split(".")
            for i in range(1, len(parts)): used[".".join(parts[:i])].add(parts[i])
    return used


# --------------------------------------------------------------------------------------- our names
def our_index(package="torchebm_nb"):
    "Every importable module of our package, by dotted name."
    pkg = importlib.import_module(package)
    modules = {package: pkg}
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        if info.name.split(".")[-1].startswith("_"): continue
        try: modules[info.name] = importlib.import_module(info.name)
        except Exception as e: print(f"warning: cannot import {info.name}: {type(e).__name__}: {e}", file=sys.stderr)
    return modules


def _defined_in(obj):
    m = getattr(obj, "__module__", None)
    return m if isinstance(m, str) else None


def locate(name: str, upstream_module: str, modules: dict, package="torchebm_nb"):
    "Where torchebm_nb has an object called `name`: the module to import it from, or None."
    cands = []
    for mname, mod in modules.items():
        ns = vars(mod)
        if name in ns: obj = ns[name]
        else:
            if name not in getattr(mod, "__all__", ()) and "__getattr__" not in ns: continue
            try: obj = getattr(mod, name)
            except Exception: continue
        if isinstance(obj, type(sys)): continue          # a submodule: the mapping has its own module for it
        home = _defined_in(obj)
        ours = home is not None and (home == package or home.startswith(package + "."))
        exported = name in getattr(mod, "__all__", ())
        private = name.startswith("_") and not isinstance(obj, type) and not callable(obj)   # e.g. a registry dict
        if not (ours or exported or private): continue    # e.g. `Optional` imported from typing
        cands.append((mname, obj, home, exported))
    if not cands: return None
    up = set(upstream_module.split(".")[1:])
    def score(c):
        mname, obj, home, exported = c
        return (mname == home, exported, len(up & set(mname.split(".")[1:])), -len(mname))
    return max(cands, key=score)[0]


ABSENT = '''"Placeholders for upstream names torchebm_nb lacks: any use raises the ImportError a plain import would."


class _Absent(type):
    def __call__(cls, *a, **k): raise ImportError(cls._absent_msg)
    def __getattr__(cls, attr):
        if attr.startswith("_"): raise AttributeError(attr)
        raise ImportError(cls._absent_msg)
    def _fail(cls, *a): raise ImportError(cls._absent_msg)
    __iter__ = __len__ = __contains__ = __getitem__ = _fail


def absent(module, name):
    msg = f"cannot import name {name!r} from {module!r} (torchebm_nb has no such name)"
    return _Absent(name, (), {"_absent_msg": msg, "__module__": module})
'''


# third-party modules that upstream's modules import and its tests reach through them (mock.patch targets): the mapping
# re-exports the module object itself, which is a name, not an adapter
SHARED_MODULES = {"torch"}


def build_mapping(dest: Path, up_mods: dict, used: dict, modules: dict, late_missing: bool = True):
    """Write the name-only `torchebm` package under `dest`; return {module: {'mapped': [...], 'missing': [...]}}.
    With `late_missing`, a name we lack is a placeholder whose first use raises the ImportError that importing it
    would have raised, so that one absent name fails only the tests that use it, not its whole test module."""
    import torchebm_nb
    report = {}
    all_mods = set(up_mods) | {m for m in used if m in up_mods or any(k.startswith(m + ".") for k in up_mods)}
    for mod in sorted(all_mods):
        names = set(up_mods.get(mod, ())) | used.get(mod, set())
        subpkgs = {k.split(".")[len(mod.split("."))] for k in up_mods if k.startswith(mod + ".")}
        listed_subpkgs = sorted(names & subpkgs)
        names -= subpkgs | {"__version__"}
        lines = [f'"Name-only mapping of upstream `{mod}` onto torchebm_nb (generated by tools/upstream_tests.py)."']
        lines += [f"from . import {s}" for s in listed_subpkgs]   # upstream exposes these subpackages as attributes
        mapped, missing = [], []
        for n in sorted(names):
            if n in SHARED_MODULES:    # e.g. tests patch `torchebm.losses.energy_matching.torch.rand`: the same torch
                mapped.append(n); lines.append(f"import {n}"); continue
            where = locate(n, mod, modules)
            if where is None: missing.append(n)
            else: mapped.append(n); lines.append(f"from {where} import {n}")
        if missing and late_missing:
            lines.append("from torchebm._absent import absent")
            lines += [f"{n} = absent({mod!r}, {n!r})" for n in missing]
        if mod == "torchebm":
            lines.append(f"__version__ = {torchebm_nb.__version__!r}  # torchebm_nb's version")
        is_pkg = bool(subpkgs) or mod == "torchebm"
        path = dest.joinpath(*mod.split("."))
        if is_pkg: path.mkdir(parents=True, exist_ok=True); path = path / "__init__.py"
        else: path.parent.mkdir(parents=True, exist_ok=True); path = path.with_suffix(".py")
        path.write_text("\n".join(lines) + "\n")
        report[mod] = {"mapped": mapped, "missing": missing}
    if late_missing: (dest / "torchebm" / "_absent.py").write_text(ABSENT)
    for d in dest.rglob("*"):                      # every folder on the way is a package
        if d.is_dir() and not (d / "__init__.py").exists(): (d / "__init__.py").write_text("")
    return report


# ------------------------------------------------------------------------------------- pytest plugin
PLUGIN = r'''
"Collects per-phase results of upstream's tests as JSON lines; guards the `torchebm` import; per-test limit."
import importlib.machinery, json, os, re, signal, sys, traceback
import pytest

_MAP = os.path.realpath(os.environ["UPSTREAM_MAPPING"]) if os.environ.get("UPSTREAM_MAPPING") else None
_OUT = open(os.environ["UPSTREAM_RESULTS"], "a", buffering=1)
_LIMIT = float(os.environ.get("UPSTREAM_TIMEOUT", "30"))


class _OnlyMapping:
    "Meta-path guard: the top-level `torchebm` may only come from the generated mapping."
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchebm": return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, [_MAP])
        if spec is None: raise ModuleNotFoundError("torchebm mapping not found in " + _MAP)
        return spec


if _MAP: sys.meta_path.insert(0, _OnlyMapping())


class UpstreamTimeout(Exception):
    pass


def _emit(**rec): _OUT.write(json.dumps(rec) + "\n")


def _describe(excinfo):
    if excinfo is None: return None
    t, v = excinfo.type, excinfo.value
    name = t.__name__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__
    msg = str(v).strip().splitlines()[0][:400] if str(v).strip() else ""
    tb = traceback.extract_tb(excinfo.tb)
    where = [f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in tb[-3:]]
    ours = [f"{f.filename.split('torchebm_nb/')[-1]}:{f.lineno}:{f.name}" for f in tb if "torchebm_nb" in f.filename]
    return {"type": name, "msg": msg, "where": where, "ours": ours[-1] if ours else None}


def pytest_configure(config):
    import torchebm
    f = os.path.realpath(torchebm.__file__)
    ok = _MAP is None or f.startswith(_MAP + os.sep)
    _emit(kind="meta", torchebm_file=f, ok=ok, version=getattr(torchebm, "__version__", None))
    if not ok: raise RuntimeError("torchebm leaked in from " + f)


def _alarm(signum, frame): raise UpstreamTimeout(f"test exceeded the {_LIMIT:g} s limit")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, _LIMIT)
    try: yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    out = yield
    rep = out.get_result()
    rep.upstream_exc = _describe(call.excinfo) if call.excinfo is not None and rep.outcome != "skipped" else None


def pytest_runtest_logreport(report):
    rec = dict(kind="test", id=report.nodeid, when=report.when, outcome=report.outcome,
               duration=round(report.duration, 3), exc=getattr(report, "upstream_exc", None))
    if report.skipped:
        lr = report.longrepr
        rec["reason"] = lr[2] if isinstance(lr, tuple) else str(lr)[:300]
        if hasattr(report, "wasxfail"): rec["reason"] = "xfail: " + str(report.wasxfail)
    _emit(**rec)


_ELINE = re.compile(r"^E\s+([\w\.]+(?:Error|Exception|Exit|Interrupt|Warning|Timeout)): ?(.*)$", re.M)


def pytest_collectreport(report):
    if report.failed:
        text = str(report.longrepr)
        m = _ELINE.findall(text)
        typ, msg = m[-1] if m else ("CollectionError", text.strip().splitlines()[-1][:400] if text.strip() else "")
        _emit(kind="collect", id=report.nodeid, outcome="failed", exc={"type": typ, "msg": msg[:400]})


def pytest_deselected(items):
    for it in items: _emit(kind="deselected", id=it.nodeid, marks=sorted({m.name for m in it.iter_markers()}))


def pytest_sessionfinish(session, exitstatus):
    leaks = [k for k, m in list(sys.modules.items()) if _MAP and (k == "torchebm" or k.startswith("torchebm."))
             and getattr(m, "__file__", None) and not os.path.realpath(m.__file__).startswith(_MAP + os.sep)]
    _emit(kind="end", exitstatus=int(exitstatus), leaks=leaks)
    _OUT.close()
'''

PYTEST_INI = """[pytest]
pythonpath = .
testpaths = tests
addopts =
markers =
    examples: upstream's examples smoke runs (deselected by default, as upstream does)
    distributed: multi-process torch.distributed tests
"""


def prepare_suite(work: Path, tests: Path):
    suite = work / "suite"
    shutil.copytree(tests, suite / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (suite / "pytest.ini").write_text(PYTEST_INI)
    (work / "plugin").mkdir(exist_ok=True)
    (work / "plugin" / "upstream_plugin.py").write_text(PLUGIN)
    return suite


def _pytest_env(extra_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env.update(PYTHONPATH=os.pathsep.join(map(str, extra_path)), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               MKL_NUM_THREADS=os.environ.get("MKL_NUM_THREADS", "1"), CUDA_VISIBLE_DEVICES="")
    return env


def run_pytest(args, suite: Path, work: Path, results_file: Path, mapping: Path | None, log_name: str):
    "Run the suite in a fresh subprocess (own process group), one JSON line per test phase into `results_file`."
    env = _pytest_env(([mapping] if mapping else []) + [work / "plugin"])
    env.update(UPSTREAM_MAPPING=str(mapping) if mapping else "", UPSTREAM_RESULTS=str(results_file),
               UPSTREAM_TIMEOUT=str(args.timeout))
    targets = [f"tests/{o}" for o in args.only] or ["tests"]
    marks = "not examples" if args.distributed else "not examples and not distributed"
    cmd = [sys.executable, "-s", "-m", "pytest", *targets, "-p", "no:cacheprovider", "-p", "upstream_plugin",
           "-q", "-rN", "--tb=line", "--continue-on-collection-errors", "-m", marks]
    with open(work / log_name, "w") as log:
        proc = subprocess.Popen(cmd, cwd=suite, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try: rc = proc.wait(timeout=args.budget)
        except (subprocess.TimeoutExpired, KeyboardInterrupt): rc = "budget exceeded"
        finally:                                   # also ends stray workers the tests spawned
            try: os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError: pass
            proc.wait()
    recs = [json.loads(l) for l in results_file.read_text().splitlines() if l.strip()] if results_file.exists() else []
    return rc, recs


def upstream_baseline(args, suite: Path, work: Path, tests: Path):
    """Upstream's own results: the same suite run against the installed upstream package (cached per suite content).
    Gives the full list of test ids and which tests fail on upstream 0.8.9 itself. None when it is not installed."""
    h = hashlib.sha1(f"{BASELINE_REV}|{args.timeout}|{args.distributed}".encode())
    for f in sorted(tests.rglob("*.py")): h.update(str(f.relative_to(tests)).encode()); h.update(f.read_bytes())
    cache = Path(args.cache).expanduser(); cache.mkdir(parents=True, exist_ok=True)
    cfile = cache / f"baseline_{args.version}_{h.hexdigest()[:12]}.json"
    if cfile.exists(): base = json.loads(cfile.read_text())
    else:
        probe = subprocess.run([sys.executable, "-s", "-c", "import torchebm; print(torchebm.__version__)"],
                               capture_output=True, text=True, env=_pytest_env([]), cwd="/")
        if probe.returncode != 0 or not probe.stdout.strip().startswith(args.version):
            print(f"note: upstream torchebm {args.version} is not installed: no baseline; a module that fails to "
                  "import under the mapping counts as one test", file=sys.stderr)
            return None
        print(f"baseline: running the suite against the installed upstream {args.version} once (cached) ...", flush=True)
        saved = args.only, args.timeout
        args.only, args.timeout = [], max(4 * args.timeout, 120.0)      # upstream's statistical tests are slow
        try: rc, recs = run_pytest(args, suite, work, work / "baseline.jsonl", None, "baseline.log")
        finally: args.only, args.timeout = saved
        res, _, _ = classify(recs, None, [])
        base = {tid: {"category": "timeout" if "UpstreamTimeout" in r["reason"] else r["category"],
                      "reason": r["reason"]} for tid, r in res.items()}     # a slow test under load is no failure
        if rc != "budget exceeded": cfile.write_text(json.dumps(base))
    if args.only: base = {t: r for t, r in base.items() if any(t.startswith("tests/" + o) for o in args.only)}
    return base


# ------------------------------------------------------------------------------------ classification
_NA_PATTERNS = [
    re.compile(r"cannot import name '(\w+)' from '(torchebm(?:\.\w+)*)'"),
    re.compile(r"No module named '(torchebm(?:\.\w+)*)'"),
    re.compile(r"module '(torchebm(?:\.\w+)*)' has no attribute '(\w+)'"),
    re.compile(r"<module '(torchebm(?:\.\w+)*)' .*> does not have the attribute '(\w+)'"),
]


def missing_name(exc):
    "The `torchebm` name a failure is about, when it is an import/attribute error on one; else None."
    if not exc or not exc.get("type", "").split(".")[-1] in ("ImportError", "ModuleNotFoundError", "AttributeError"):
        return None
    msg = exc.get("msg", "")
    m = _NA_PATTERNS[0].search(msg)
    if m: return f"{m.group(2)}.{m.group(1)}"
    m = _NA_PATTERNS[1].search(msg)
    if m: return m.group(1)
    for p in _NA_PATTERNS[2:]:
        m = p.search(msg)
        if m: return f"{m.group(1)}.{m.group(2)}"
    return None


def cause_of(exc):
    "A short key that groups failures with one cause."
    if not exc: return "unknown"
    t, msg = exc.get("type", "?").split(".")[-1], exc.get("msg", "")
    m = re.search(r"(\w[\w\.]*)\(\) got an unexpected keyword argument '(\w+)'", msg)
    if m: return f"keyword {m.group(2)}= rejected by {m.group(1)}"
    m = re.search(r"(\w[\w\.]*)\(\) (?:takes|missing).*", msg)
    if t == "TypeError" and m: return f"TypeError: {re.sub(r'[0-9]+', 'N', msg)[:90]}"
    m = re.search(r"'(\w+)' object has no attribute '(\w+)'", msg)
    if m: return f"missing attribute {m.group(1)}.{m.group(2)}"
    if t == "UpstreamTimeout": return "timeout"
    if t == "AssertionError": return "assertion (value differs)"
    short = re.sub(r"[0-9]+(\.[0-9]+)?", "N", msg)[:90]
    return f"{t}: {short}"


def load_deliberate(path):
    rules = []
    if not path or not Path(path).exists(): return rules
    for line in Path(path).read_text().splitlines():
        body, _, reason = line.partition("#")
        body = body.strip()
        if not body: continue
        if not body.startswith("tests/"): body = "tests/" + body
        rules.append((body, reason.strip()))
    return rules


def _glob(pat):
    "`*` matches anything (brackets are literal: they are part of parametrized test ids)."
    return re.compile("^" + re.escape(pat).replace(r"\*", ".*") + "$")


def _match(rules, tid):
    for pat, reason in rules:
        if tid == pat or tid.startswith(pat + "::") or ("*" in pat and _glob(pat).match(tid)): return reason or "deliberate"
    return None


def classify(records, baseline, rules):
    ref_ids = [t for t in (baseline or ()) if "::" in t]
    tests, collect_errors, meta, end = {}, {}, None, None
    for r in records:
        k = r["kind"]
        if k == "meta": meta = r
        elif k == "end": end = r
        elif k == "collect": collect_errors[r["id"]] = r
        elif k == "deselected":
            why = "distributed" if "distributed" in r["marks"] else "examples" if "examples" in r["marks"] else "-m"
            tests[r["id"]] = [dict(outcome="skipped", when="setup", reason=f"deselected ({why}): " + (
                "multi-process torch.distributed test, run with --distributed" if why == "distributed"
                else "upstream deselects it by default"))]
        else: tests.setdefault(r["id"], []).append(r)
    results = {}
    for tid, reps in tests.items():
        cat, exc, reason = "passed", None, ""
        for r in reps:
            if r["outcome"] == "skipped": cat, reason = "skipped", r.get("reason", "")[:200]; break
            if r["outcome"] == "failed":
                exc = r.get("exc") or {"type": "?", "msg": ""}
                cat = "failed" if r["when"] == "call" else "error"
                break
        results[tid] = {"category": cat, "exc": exc, "reason": reason}
    # modules that failed to import: each of their upstream tests takes the module's error
    for cid, r in collect_errors.items():
        members = [i for i in (ref_ids or []) if i.split("::")[0] == cid or i.startswith(cid + "::")]
        for tid in (members or [cid]):
            if tid not in results: results[tid] = {"category": "error", "exc": r["exc"], "reason": "", "collect": True}
    for tid in ref_ids or []:
        if tid not in results:
            results[tid] = {"category": "error", "exc": {"type": "NotRun", "msg": "not run (deselected or run stopped)"},
                            "reason": ""}
    for tid, res in results.items():
        exc = res["exc"]
        name = missing_name(exc)
        if res["category"] in ("failed", "error") and name:
            res["category"], res["cause"] = "n/a", f"missing {name}"
        elif res["category"] in ("failed", "error"):
            res["cause"] = ("collection: " if res.get("collect") else "") + cause_of(exc)
        if exc: res["reason"] = f"{exc.get('type')}: {exc.get('msg', '')}"[:240]
        if exc and exc.get("ours"): res["ours"] = exc["ours"]
        b = (baseline or {}).get(tid)
        if b: res["upstream"] = b["category"]
        elif tid.split("::")[0] in (baseline or {}): res["upstream"] = "module fails to import"
        if res["category"] in ("failed", "error", "n/a") and b and b["category"] in ("failed", "error", "n/a"):
            res["category"], res["cause"] = "upstream fails", "fails on upstream 0.8.9 too"
            res["upstream_reason"] = b["reason"]
        if res["category"] in ("failed", "error"):           # a missing name stays n/a: that is the first fact
            d = _match(rules, tid)
            if d: res["deliberate_reason"], res["category"] = d, "deliberate"
        elif res["category"] == "passed" and _match(rules, tid): res["deliberate_but_passes"] = True
    return results, meta, end


def module_of(tid): return tid.split("::")[0].removeprefix("tests/")


def summarize(results):
    per = defaultdict(Counter)
    for tid, r in results.items(): per[module_of(tid)][r["category"]] += 1
    totals = Counter()
    for c in per.values(): totals.update(c)
    return per, totals


def print_table(per, totals, file=sys.stdout):
    w = max([len(m) for m in per] + [len("TOTAL")])
    head = f"{'module':<{w}}  " + "  ".join(f"{c:>10}" for c in CATEGORIES) + f"  {'total':>6}"
    print(head, file=file); print("-" * len(head), file=file)
    for m in sorted(per):
        c = per[m]
        print(f"{m:<{w}}  " + "  ".join(f"{c[k]:>10}" for k in CATEGORIES) + f"  {sum(c.values()):>6}", file=file)
    print("-" * len(head), file=file)
    print(f"{'TOTAL':<{w}}  " + "  ".join(f"{totals[k]:>10}" for k in CATEGORIES) + f"  {sum(totals.values()):>6}",
          file=file)


def _dump(out):
    "JSON with one line per module and per non-passing test (short, and diffs read well)."
    parts = []
    for k, v in out.items():
        if isinstance(v, dict) and v and all(isinstance(x, (dict, list)) for x in v.values()):
            body = ",\n".join(f"  {json.dumps(kk)}: {json.dumps(vv)}" for kk, vv in v.items())
            parts.append(f"{json.dumps(k)}: {{\n{body}\n }}")
        elif isinstance(v, list) and v:
            parts.append(f"{json.dumps(k)}: [\n" + ",\n".join("  " + json.dumps(x) for x in v) + "\n ]")
        else: parts.append(f"{json.dumps(k)}: {json.dumps(v)}")
    text = "{\n " + ",\n ".join(parts) + "\n}\n"
    assert json.loads(text) == json.loads(json.dumps(out))
    return text


# ------------------------------------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tests", help="an extracted upstream tests/ folder (offline use)")
    ap.add_argument("--source", help="upstream's torchebm package folder (instead of the downloaded sdist)")
    ap.add_argument("--cache", default="~/.cache/torchebm_nb_upstream", help="download/extract cache")
    ap.add_argument("--version", default=VERSION, help="upstream release (default %(default)s)")
    ap.add_argument("--differences", default=str(ROOT / "tools" / "upstream_deliberate.txt"),
                    help="file of test ids/globs we fail on purpose: `TEST_ID  # reason` lines")
    ap.add_argument("--out", help="result JSON (default benchmarks/results/upstream_tests.json for a full run, "
                                  "upstream_tests_partial.json in the temporary folder with --only)")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-test limit in seconds")
    ap.add_argument("--budget", type=float, default=1500.0, help="limit for the whole pytest run in seconds")
    ap.add_argument("--only", nargs="*", default=[], help="test paths under tests/ (prefixes) to run")
    ap.add_argument("--keep", help="folder to keep the mapping, the test copy and pytest's log in")
    ap.add_argument("--distributed", action="store_true",
                    help="also run upstream's multi-process torch.distributed tests (about 20 s each on 2 cores)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the baseline run against the installed upstream package")
    ap.add_argument("--absent-at-import", action="store_true",
                    help="leave names we lack out of the mapping entirely (a test module importing one fails whole) "
                         "instead of placeholders that raise the same ImportError at first use")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.out is None:     # a partial run never overwrites the published full-run results
        args.out = str(Path(tempfile.gettempdir()) / "upstream_tests_partial.json") if args.only \
            else str(ROOT / "benchmarks" / "results" / "upstream_tests.json")

    t0 = time.time()
    import importlib.util
    if importlib.util.find_spec("pytest") is None: sys.exit("pytest is not installed here: pip install pytest")
    src = upstream_source(args)
    tests = upstream_tests_dir(args, src)
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="upstream_tests_"))
    if args.keep and work.exists(): shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        sys.path.insert(0, str(ROOT))
        up_mods, used = upstream_modules(src), names_used_by_tests(tests)
        mapping = work / "mapping"
        report = build_mapping(mapping, up_mods, used, our_index(), late_missing=not args.absent_at_import)
        n_mapped = sum(len(v["mapped"]) for v in report.values())
        n_missing = sum(len(v["missing"]) for v in report.values())
        print(f"mapping: {len(report)} modules, {n_mapped} names mapped, {n_missing} upstream names we lack", flush=True)
        suite = prepare_suite(work, tests)
        base = None if args.no_baseline else upstream_baseline(args, suite, work, tests)
        print(f"running upstream's tests under the mapping (per-test limit {args.timeout:g} s) ...", flush=True)
        t1 = time.time()
        rc, records = run_pytest(args, suite, work, work / "results.jsonl", mapping, "pytest.log")
        run_s = time.time() - t1
        if not any(r["kind"] == "meta" for r in records):
            sys.exit(f"pytest did not start under the mapping (rc={rc}); see {work / 'pytest.log'}:\n"
                     + (work / "pytest.log").read_text()[-3000:])
        results, meta, end = classify(records, base, load_deliberate(args.differences))
        if not meta["ok"] or (end and end["leaks"]):
            sys.exit(f"the installed upstream torchebm leaked into the run: {meta} {end}")
        per, totals = summarize(results)
        if not args.quiet: print_table(per, totals)
        causes = Counter(r.get("cause") for r in results.values() if r["category"] in ("failed", "error"))
        out = {
            "upstream_version": args.version,
            "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python tools/upstream_tests.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "pytest_returncode": rc, "run_s": round(run_s, 1), "wall_s": round(time.time() - t0, 1),
            "per_test_timeout_s": args.timeout, "only": args.only,
            "absent_names": "left out (ImportError at import)" if args.absent_at_import
                            else "placeholders (the same ImportError at first use)",
            "baseline": "installed upstream" if base is not None else None,
            "totals": {c: totals[c] for c in CATEGORIES} | {"total": sum(totals.values())},
            "modules": {m: {c: per[m][c] for c in CATEGORIES} | {"total": sum(per[m].values())} for m in sorted(per)},
            "causes": dict(causes.most_common()),
            "mapping_missing": {m: v["missing"] for m, v in sorted(report.items()) if v["missing"]},
            "nonpassing": [{"id": tid, "category": r["category"], "cause": r.get("cause", r["category"]),
                            "reason": r.get("deliberate_reason") or r["reason"],
                            **{k: r[k] for k in ("ours", "upstream", "upstream_reason") if k in r}}
                           for tid, r in sorted(results.items()) if r["category"] != "passed"],
            "deliberate_but_passing": sorted(t for t, r in results.items() if r.get("deliberate_but_passes")),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(_dump(out))
        t = out["totals"]
        print(f"upstream {args.version} tests under torchebm_nb: {t['passed']} passed, {t['failed']} failed, "
              f"{t['error']} errors, {t['skipped']} skipped, {t['n/a']} n/a, {t['deliberate']} deliberate "
              f"({t['total']} tests, {run_s:.0f} s); wrote {args.out}")
        return 0
    finally:
        if not args.keep: shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
