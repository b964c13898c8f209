"""Browser check of the docs preview: open every page of `_preview/` in headless Chromium and inspect the live DOM.

    python tools/preview_docs.py && python tools/check_docs.py

For each page (the rendered DOM after scripts ran, from `chromium --headless --dump-dom`), it checks:
- a title: a non-empty `<title>` and an `<h1>`;
- no Python traceback in any cell output (error outputs, `Traceback (most recent call last)`, `XxxError: ...` lines);
- figures where the notebook has plots: at least as many `<img>` as the source notebook has saved image outputs, each
  a decodable PNG/JPEG/SVG, and none missing for a (non-slow) cell that draws a figure;
- links that resolve: every relative `href`/`src` points to an existing file, and a `#fragment` into a preview page
  names an element id there;
- LaTeX typeset: on pages with math, MathJax ran (rendered math elements present, no `Math input error`);
- every notebook has a page and every page is in the sidebar.

And, from the notebooks themselves (no browser needed): every page's `> description` is one line (nbdev keeps only
the first line of it as the subtitle, so a description written over two lines is shown cut mid-sentence).

`--self-test` first builds a tiny preview with one known defect per page (traceback, missing title, broken link,
bad anchor, invalid image, untypeset LaTeX) and two tiny notebooks (a one-line and a two-line description), and fails
unless every defect is reported: a check that cannot fail is no check. CI runs it with the self-test.

Exit status 0 when all pages pass, 1 on a failure, 2 when no Chromium is found (then it says so plainly; with
`--allow-missing-browser` it exits 0 after saying so). No Python dependency beyond the standard library.
"""
import argparse, base64, html, json, os, re, shutil, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREVIEW = ROOT / '_preview'
sys.path.insert(0, str(Path(__file__).resolve().parent))
from preview_docs import expected_figures, description_problems  # the same rules the builder warns with

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio']
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|^\s*(?:[\w.]+\.)?\w*(?:Error|Exception): ', re.M)

def find_browser():
    exe = os.environ.get('CHROMIUM')
    if exe: return shutil.which(exe)  # an explicit choice: no fallback
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)

class Page(HTMLParser):
    "Collect what the checks need from a DOM dump: title, h1s, ids, links, images, output texts, math markers."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title, self.in_title, self.h1 = '', False, 0
        self.ids, self.links, self.imgs, self.outputs = set(), [], [], []
        self.math_rendered, self.math_errors = 0, 0
        self._stack = []   # open tags: (tag, output-record or None)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'a' and 'name' in a: self.ids.add(a['name'])
        if tag == 'title': self.in_title = True
        if tag == 'h1': self.h1 += 1
        if tag == 'a' and a.get('href'): self.links.append(('a', a['href']))
        if tag in ('script', 'img', 'iframe') and a.get('src'): self.links.append((tag, a['src']))
        if tag == 'link' and a.get('href'): self.links.append(('link', a['href']))
        if tag == 'img': self.imgs.append(a.get('src', ''))
        cls = a.get('class', '') or ''
        if 'MathJax' in cls or 'mjx-chtml' in cls: self.math_rendered += 1
        if 'MathJax_Error' in cls or 'merror' in cls: self.math_errors += 1
        rec = None
        if tag == 'div' and 'jp-OutputArea-output' in cls.split():
            rec = {'mime': a.get('data-mime-type', ''), 'text': []}; self.outputs.append(rec)
        if tag not in ('img', 'br', 'hr', 'meta', 'link', 'input', 'source', 'wbr', 'area', 'col', 'embed', 'base'):
            self._stack.append((tag, rec))
    def handle_endtag(self, tag):
        if tag == 'title': self.in_title = False
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag: del self._stack[i:]; break
    def handle_data(self, data):
        if self.in_title: self.title += data
        for _, rec in self._stack:
            if rec is not None: rec['text'].append(data)
        if 'Math input error' in data: self.math_errors += 1

def dump_dom(browser, url, timeout=45):
    "The DOM of `url` after its scripts ran (virtual time lets MathJax finish), from a fresh browser profile."
    with tempfile.TemporaryDirectory(prefix='check_docs_') as prof:
        cmd = [browser, *FLAGS, f'--user-data-dir={prof}', '--virtual-time-budget=15000', '--dump-dom', url]
        try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f'the page did not finish loading in {timeout} s (MathJax stuck on malformed LaTeX, or a script hangs)') from None
    if r.returncode != 0 or '<html' not in r.stdout.lower():
        raise RuntimeError(f'chromium failed on {url} (exit {r.returncode}): {r.stderr.strip()[-400:]}')
    return r.stdout

def _valid_image(src, page_dir):
    if src.startswith('data:'):
        m = re.match(r'data:image/(png|jpeg|svg\+xml)(;base64)?,(.*)', src, re.S)
        if not m: return False
        if m.group(2) is None: return m.group(1) == 'svg+xml' and '<svg' in html.unescape(m.group(3))[:2000]
        try: raw = base64.b64decode(m.group(3), validate=False)
        except Exception: return False
        return raw.startswith(b'\x89PNG\r\n\x1a\n') if m.group(1) == 'png' else raw.startswith(b'\xff\xd8') if m.group(1) == 'jpeg' else b'<svg' in raw[:2000]
    f = (page_dir / src.split('#')[0].split('?')[0])
    return f.exists() and f.stat().st_size > 0

def check_page(rel, meta, dom, preview=PREVIEW):
    "All problems found on one page (a list of strings; empty when it passes)."
    p = Page(); p.feed(dom)
    probs, page_dir = [], (preview / rel).parent
    if not p.title.strip(): probs.append('no <title>')
    if not p.h1: probs.append('no <h1> heading')
    for o in p.outputs:
        text = ''.join(o['text'])
        if TRACEBACK.search(text):
            line = next((l for l in text.splitlines() if TRACEBACK.search(l)), text.strip()[:120])
            probs.append(f'Python traceback in an output: {line.strip()[:160]}')
    good = [s for s in p.imgs if _valid_image(s, page_dir)]
    if len(good) < len(p.imgs): probs.append(f'{len(p.imgs) - len(good)} <img> elements that are not valid images')
    if meta.get('source'):
        n_exp, missing = expected_figures(ROOT / meta['source'])
        if len(good) < n_exp: probs.append(f'{len(good)} valid figures on the page, the notebook has {n_exp} image outputs')
        for i in missing: probs.append(f'cell {i} of {meta["source"]} draws a figure but has no saved image output')
    for kind, url in p.links:
        if re.match(r'^[a-zA-Z][\w+.-]*:', url) or url.startswith('//'): continue   # http:, mailto:, data:, javascript:
        path, _, frag = url.partition('#')
        path = path.split('?')[0]
        if not path:   # same-page fragment
            if frag and frag not in p.ids: probs.append(f'link #{frag} names no element on this page')
            continue
        target = (page_dir / path)
        if not target.exists(): probs.append(f'broken {kind} link: {url} ({target.relative_to(preview) if target.resolve().is_relative_to(preview.resolve()) else target} missing)'); continue
        if frag and target.suffix == '.html':
            t = Page(); t.feed(target.read_text(encoding='utf-8', errors='replace'))
            if frag not in t.ids: probs.append(f'link {url}: no element with id "{frag}" in {path}')
    if meta.get('has_math'):
        if p.math_rendered == 0: probs.append('LaTeX on the page was not typeset (MathJax did not run: is it reachable?)')
        if p.math_errors: probs.append(f'{p.math_errors} MathJax errors (bad LaTeX)')
    return probs

SELF_TEST_PAGES = {  # page -> (html body, the problem the check must report)
    'good.html': ('<h1>Good</h1><p>$x^2$</p><a href="sub/other.html#there">ok</a><img src="data:image/png;base64,'
                  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==">', None),
    'sub/other.html': ('<h1 id="there">Other</h1><a href="../good.html">back</a>', None),
    'traceback.html': ('<h1>T</h1><div class="jp-RenderedText jp-OutputArea-output" data-mime-type="application/vnd.jupyter.stderr">'
                       '<pre>Traceback (most recent call last)\nValueError: boom</pre></div>', 'Python traceback'),
    'notitle.html': ('<p>no heading</p>', 'no <h1>'),
    'broken.html': ('<h1>B</h1><a href="missing.html">x</a>', 'broken a link: missing.html'),
    'anchor.html': ('<h1>A</h1><a href="sub/other.html#nowhere">x</a>', 'no element with id "nowhere"'),
    'badimg.html': ('<h1>I</h1><img src="data:image/png;base64,AAAA">', 'not valid images'),
    'nomath.html': ('<h1>M</h1><p>$x^2$</p>', 'LaTeX on the page was not typeset'),
}

def self_test(browser):
    "Build a small preview with one known defect per page and check that each defect is reported (and none on good pages)."
    with tempfile.TemporaryDirectory(prefix='check_docs_selftest_') as d:
        root = Path(d)
        mj = Path('/usr/share/javascript/mathjax')
        pages = {}
        for rel, (body, _) in SELF_TEST_PAGES.items():
            f = root / rel; f.parent.mkdir(parents=True, exist_ok=True)
            up = '../' * (len(Path(rel).parts) - 1)
            script = (f'<script src="{up}_mathjax/MathJax.js?config=TeX-AMS_CHTML-full"></script>'
                      '<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {inlineMath: [["$","$"]]}});</script>'
                      if rel in ('good.html',) and mj.exists() else '')
            title = '' if rel == 'notitle.html' else rel
            f.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>{script}</head><body>{body}</body></html>')
            pages[rel] = {'title': rel, 'source': None, 'has_math': '$' in body and (rel != 'good.html' or mj.exists())}
        if mj.exists(): (root / '_mathjax').symlink_to(mj, target_is_directory=True)
        failures = []
        for rel, (_, expected) in SELF_TEST_PAGES.items():
            probs = check_page(rel, pages[rel], dump_dom(browser, (root / rel).as_uri()), root)
            if expected is None and probs: failures.append(f'{rel}: expected no problem, got {probs}')
            if expected is not None and not any(expected in p for p in probs):
                failures.append(f'{rel}: expected a problem containing {expected!r}, got {probs}')
        for f in failures: print('self-test FAIL', f)
        print(f'self-test: {len(SELF_TEST_PAGES) - len(failures)}/{len(SELF_TEST_PAGES)} cases as expected'
              + (' -- OK' if not failures else ' -- FAILED'))
        return not failures

def source_problems(nbs=ROOT / 'nbs'):
    "Problems found in the notebooks themselves: ['nbs/X.ipynb: problem', ...]."
    out = []
    for f in sorted(nbs.rglob('*.ipynb')):
        rel = f.relative_to(nbs)
        if any(x.startswith(('_', '.')) for x in rel.parts): continue
        out += [f'{nbs.name}/{rel.as_posix()}: {p}' for p in description_problems(f)]
    return out

def self_test_sources():
    "A notebook whose description runs over two lines must be reported, one written on one line must not."
    cases = {'# T\n\n> one line, all of it.': False, '# T\n\n> cut in the\n> middle of a sentence.': True,
             '# T\n\n> a description.\n\nThen a paragraph.': False}
    failures = []
    with tempfile.TemporaryDirectory(prefix='check_docs_selftest_') as d:
        for i, (src, bad) in enumerate(cases.items()):
            f = Path(d) / f'nb{i}.ipynb'
            f.write_text(json.dumps({'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': src}], 'metadata': {},
                                     'nbformat': 4, 'nbformat_minor': 5}))
            if bool(description_problems(f)) != bad: failures.append(f'description check on {src!r}: expected {"a problem" if bad else "none"}')
    for f in failures: print('self-test FAIL', f)
    print(f'self-test (notebook sources): {len(cases) - len(failures)}/{len(cases)} cases as expected' + (' -- OK' if not failures else ' -- FAILED'))
    return not failures

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--allow-missing-browser', action='store_true', help='exit 0 (after saying so) when no Chromium is installed')
    ap.add_argument('--preview', default=str(PREVIEW), help='the preview folder built by tools/preview_docs.py')
    ap.add_argument('--jobs', type=int, default=2, help='pages checked in parallel')
    ap.add_argument('--self-test', action='store_true', help='first check that the checks detect known defects')
    a = ap.parse_args()
    preview = Path(a.preview).resolve()
    if a.self_test and not self_test_sources(): sys.exit(1)
    sources = source_problems()  # checked from the notebooks, with or without a browser
    browser = find_browser()
    if browser is None:
        for p in sources: print(f'FAIL source: {p}')
        print('BROWSER CHECK NOT RUN: no Chromium found (looked for ' + ', '.join(BROWSERS) + ' and $CHROMIUM).\n'
              'Install Debian\'s chromium (`apt-get install chromium`) to check the docs preview in a browser.')
        sys.exit(1 if sources else 0 if a.allow_missing_browser else 2)
    if a.self_test and not self_test(browser): sys.exit(1)
    manifest = preview / 'pages.json'
    if not manifest.exists():
        print(f'no {manifest}: build the preview first with `python tools/preview_docs.py`'); sys.exit(1)
    man = json.loads(manifest.read_text())
    pages = man['pages']
    version = subprocess.run([browser, '--version'], capture_output=True, text=True).stdout.strip()
    print(f'browser: {version or browser}; {len(pages)} pages in {preview}')

    def one(rel):
        try: return rel, check_page(rel, pages[rel], dump_dom(browser, (preview / rel).as_uri()), preview)
        except Exception as e: return rel, [f'could not check: {e}']
    with ThreadPoolExecutor(max(1, a.jobs)) as ex: results = dict(ex.map(one, list(pages)))

    site = []  # site-level problems: notebooks without a page, pages outside the sidebar
    nbs = ROOT / 'nbs'
    have = {m['source'] for m in pages.values() if m.get('source')}
    for f in sorted(nbs.rglob('*.ipynb')):
        rel = f.relative_to(nbs)
        if any(x.startswith(('_', '.')) for x in rel.parts): continue
        if f'nbs/{rel.as_posix()}' in have: continue
        why = man.get('failed', {}).get(rel.as_posix())
        site.append(f'nbs/{rel.as_posix()} ' + (f'failed to process: {why}' if why else 'has no page in the preview (rebuild it)'))
    site += [w for w in man.get('warnings', []) if 'not listed in sidebar.yml' in w or 'sidebar.yml lists' in w]
    site += sources

    n_bad = 0
    for rel in man['order'] + [r for r in pages if r not in man['order']]:
        probs = results[rel]
        n_bad += bool(probs)
        print(f'{"FAIL" if probs else "ok  "} {rel}  ({pages[rel]["title"]})')
        for pr in probs: print(f'       - {pr}')
    for s in site: print(f'FAIL site: {s}')
    ok = n_bad == 0 and not site
    print(f'browser check: {len(pages) - n_bad}/{len(pages)} pages pass' + ('' if not site else f', {len(site)} site problems')
          + (' -- OK' if ok else ' -- FAILED'))
    sys.exit(0 if ok else 1)

if __name__ == '__main__':
    main()
