"""Build a static HTML preview of the documentation site without Quarto.

    python tools/preview_docs.py            # -> _preview/index.html (open it in a browser)

Steps: nbdev's `proc_nbs` writes the processed notebooks to `_proc/` (hidden cells dropped, `show_doc` executed,
front matter added); each one is rendered with nbconvert's `lab` template into `_preview/`, keeping the folder layout
(`tutorials/`, `explanations/`) and Quarto's page names (the front matter's `output-file`, e.g. `00_core.ipynb` ->
`core.html`). Every page gets a sidebar in `nbs/sidebar.yml` order and MathJax; `_preview/contents.html` lists all pages.
Links to `.ipynb` files and absolute links to the published site are rewritten to the local pages.
A `pages.json` manifest (page -> title, source notebook, expected figure count) is written for `tools/check_docs.py`.
A notebook whose `> description` runs over more than one line (the subtitle would be cut) is warned about.

Never call `nbdev_proc_nbs`/`nbdev_docs`/`nbdev_preview` here: without Quarto they try to install it.
"""
import argparse, html, json, os, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / '_preview'
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
PLOT_CALL = re.compile(r'\b(plt\.|plot_\w+\(|\.imshow\(|\.scatter\(|\.contourf?\(|\.hist\(|subplots\()')
MATHJAX_CDN = 'https://cdn.jsdelivr.net/npm/mathjax@2.7.9/MathJax.js?config=TeX-AMS_CHTML-full,Safe'
MATHJAX_LOCAL = Path('/usr/share/javascript/mathjax')  # Debian's libjs-mathjax (MathJax 2.7), used offline when present
PANDOC_LINK = re.compile(r'\[([^\]]*)\]\(([^)\s]*)\)\{([^}]*)\}')  # [text](url){target="_blank" ...}: Quarto-only syntax

def _pandoc_links(md):
    "Turn Pandoc/Quarto attributed links into HTML anchors (nbconvert's markdown does not know the `{...}` syntax)."
    return PANDOC_LINK.sub(lambda m: f'<a href="{m.group(2)}" {m.group(3)}>{m.group(1)}</a>', md)

def _directives(src):
    "nbdev/Quarto cell directives of a code cell as a dict (`#| echo: false` -> {'echo': 'false'})."
    return {m.group(1): m.group(2) for l in src.splitlines() if (m := DIRECTIVE.match(l))}

def _strip_directives(src):
    return '\n'.join(l for l in src.splitlines() if not DIRECTIVE.match(l)).strip('\n')

def description_problems(nb_path):
    """Problems with a notebook's title block (`# Title`, blank line, `> description`): nbdev turns only the first line
    of the `>` description into the page's subtitle, so a description written over two lines is shown cut mid-sentence."""
    nb = json.loads(Path(nb_path).read_text())
    if not nb.get('cells') or nb['cells'][0]['cell_type'] != 'markdown': return []
    src = nb['cells'][0]['source']
    lines = (''.join(src) if isinstance(src, list) else src).split('\n')
    for i, line in enumerate(lines):
        if line.startswith('>'):
            if i + 1 < len(lines) and lines[i + 1].strip():
                return [f'the page description (`> ...`) goes on to a second line ({lines[i + 1].strip()[:40]!r}), which the '
                        'docs drop: the subtitle is cut mid-sentence; write the description on one line']
            return []
    return []

def expected_figures(nb_path):
    "Saved image outputs of the source notebook, and the non-skipped cells that draw without a saved image."
    nb = json.loads(Path(nb_path).read_text())
    n, missing = 0, []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        d = _directives(src)
        if 'hide' in d or d.get('include') == 'false' or 'export' in d or 'exporti' in d: continue
        figs = sum(1 for o in c.get('outputs', []) if any(k.startswith('image/') for k in o.get('data', {})))
        n += figs
        skipped = 'slow' in d or 'cuda' in d or d.get('eval') == 'false'
        if not figs and not skipped and PLOT_CALL.search(src) and 'def ' not in src: missing.append(i)
    return n, missing

def _front_matter(nb):
    "Pop the raw YAML front-matter cell that nbdev adds; return it as a dict."
    import yaml
    if nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.lstrip().startswith('---'):
        fm = yaml.safe_load(nb.cells.pop(0).source.strip().strip('-')) or {}
        return fm
    return {}

# ---------------------------------------------------------------------------------------------------------- sidebar
def sidebar_entries(nbs_path):
    "[(section or None, notebook path relative to nbs/)] in `sidebar.yml` order (strings, `href:` items and sections)."
    import yaml
    f = nbs_path / 'sidebar.yml'
    if not f.exists(): return []
    sb = (yaml.safe_load(f.read_text()) or {}).get('website', {}).get('sidebar', {})
    if isinstance(sb, list): sb = sb[0] if sb else {}
    out = []
    def walk(items, section):
        for it in items or []:
            if isinstance(it, str): out.append((section, it))
            elif isinstance(it, dict) and 'section' in it: walk(it.get('contents'), it['section'])
            elif isinstance(it, dict) and 'href' in it: out.append((section, it['href']))
    walk(sb.get('contents'), None)
    return out

# ---------------------------------------------------------------------------------------------------------- pages
def _prepare(nb, site_url):
    "Make a processed notebook nbconvert-ready: honour directives, drop nbdev-internal keys. Returns (nb, n_figs, warnings)."
    cells, n_figs, warns = [], 0, []
    for i, cell in enumerate(nb.cells):
        cell.pop('has_sd', None)  # nbdev-internal key: not valid nbformat
        if cell.cell_type == 'code':
            d = _directives(cell.source)
            if d.get('include') == 'false': continue
            cell.source = _strip_directives(cell.source)
            tags = cell.metadata.setdefault('tags', [])
            if d.get('echo') == 'false' or 'hide_input' in d: tags.append('remove_input')
            if d.get('output') == 'false' or 'hide_output' in d: cell.outputs = []
            n_figs += sum(1 for o in cell.get('outputs', []) if any(k.startswith('image/') for k in o.get('data', {})))
            for o in cell.get('outputs', []):
                if o.get('output_type') == 'execute_result' and 'text/markdown' in o.get('data', {}):
                    o['data']['text/markdown'] = _pandoc_links(o['data']['text/markdown'].replace(site_url, '@@SITE@@'))
        elif cell.cell_type == 'markdown':
            cell.source = _pandoc_links(cell.source.replace(site_url, '@@SITE@@'))
        cells.append(cell)
    nb.cells = cells
    return nb, n_figs, warns

HREF = re.compile(r'''(\s(?:href|src)=)(["'])(.*?)\2''')

def _fix_links(page_html, page_rel, name_map):
    "Rewrite site-absolute links and links to notebooks into relative links to preview pages."
    depth = len(Path(page_rel).parts) - 1
    up = '../' * depth
    def fix(m):
        url = m.group(3)
        if url.startswith('@@SITE@@'): url = up + url[len('@@SITE@@'):].lstrip('/')
        path, sep, frag = url.partition('#')
        if path.endswith('.ipynb') and not re.match(r'^[a-z]+:', path):
            key = os.path.normpath(os.path.join(os.path.dirname(page_rel), path)).replace(os.sep, '/')
            if key in name_map: path = os.path.relpath(name_map[key], os.path.dirname(page_rel) or '.').replace(os.sep, '/')
            else: path = path[:-len('.ipynb')] + '.html'
        return f'{m.group(1)}{m.group(2)}{path}{sep}{frag}{m.group(2)}'
    return HREF.sub(fix, page_html).replace('@@SITE@@', up.rstrip('/') or '.')

HEADING = re.compile(r'<h([1-6]) id="([^"]*)">(.*?)(<a class="anchor-link")', re.S)

def _pandoc_id(text):
    "Pandoc's automatic heading identifier (what Quarto uses, and what nbdev's doc links point to)."
    t = re.sub(r'[^\w\s.-]', '', html.unescape(re.sub(r'<[^>]+>', '', text)).replace('¶', '')).strip().lower()
    t = re.sub(r'\s+', '-', t)
    return re.sub(r'^[^a-z]+', '', t) or 'section'

def _quarto_anchors(page_html):
    "Give each heading Quarto's id as well as nbconvert's, so `core.html#basemodel` style links resolve."
    def add(m):
        pid = _pandoc_id(m.group(3))
        extra = f'<span id="{pid}"></span>' if pid != m.group(2) else ''
        return f'<h{m.group(1)} id="{m.group(2)}">{extra}{m.group(3)}{m.group(4)}'
    return HEADING.sub(add, page_html)

CSS = """
<style>
body { margin: 0; }
.tebm-sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: 250px; overflow-y: auto; padding: 1rem 1rem 2rem 1.2rem;
  background: #f7f7f9; border-right: 1px solid #e3e3e8; font: 14px/1.45 system-ui, sans-serif; box-sizing: border-box; }
.tebm-sidebar .tebm-brand { font-weight: 700; font-size: 17px; display: block; margin-bottom: .8rem; color: #1a1a2e; text-decoration: none; }
.tebm-sidebar .tebm-section { margin: .9rem 0 .3rem; font-weight: 600; color: #555; text-transform: uppercase; font-size: 12px; letter-spacing: .04em; }
.tebm-sidebar a { display: block; padding: .15rem 0; color: #2a5db0; text-decoration: none; }
.tebm-sidebar a.tebm-current { font-weight: 700; color: #111; }
.tebm-page { margin-left: 250px; max-width: 1050px; padding: 1rem 2rem 4rem; }
.tebm-title h1 { margin-bottom: .2rem; }
.tebm-title .tebm-description { color: #555; font-size: 1.1rem; margin-top: 0; }
.jp-Notebook { padding: 0 !important; }
@media (max-width: 800px) { .tebm-sidebar { position: static; width: auto; } .tebm-page { margin-left: 0; } }
</style>
"""

def _sidebar_html(pages, groups, current):
    "The navigation column: one link per page, grouped by sidebar section, relative to `current`."
    up = '../' * (len(Path(current).parts) - 1)
    items = [f'<a class="tebm-brand" href="{up}index.html">{html.escape(pages.get("index.html", {}).get("title", "Home"))}</a>',
             f'<a href="{up}contents.html"{" class=tebm-current" if current == "contents.html" else ""}>All pages</a>']
    for section, rels in groups:
        if section: items.append(f'<div class="tebm-section">{html.escape(section)}</div>')
        for rel in rels:
            cls = ' class="tebm-current"' if rel == current else ''
            items.append(f'<a href="{up}{rel}"{cls}>{html.escape(pages[rel]["title"])}</a>')
    return '<nav class="tebm-sidebar" aria-label="Site navigation">\n' + '\n'.join(items) + '\n</nav>'

def _wrap(body_html, title, sidebar, description=None):
    "Put the title block, sidebar and page container around an nbconvert page."
    head = f'<div class="tebm-title"><h1>{html.escape(title)}</h1>'
    if description:
        desc = re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(str(description)))
        head += f'<p class="tebm-description">{desc}</p>'
    head += '</div>'
    body_html = body_html.replace('</head>', CSS + '</head>', 1)
    body_html = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + '\n' + sidebar + '\n<div class="tebm-page">\n' + head, body_html, count=1)
    return body_html.replace('</body>', '</div>\n</body>', 1)

def _short_error(e):
    "One line for a notebook that failed to process: nbdev's message and the root exception."
    head = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    chain, x = [], e
    while x is not None: chain.append(str(x)); x = x.__cause__ or x.__context__
    roots = [l.strip() for c in chain for l in c.splitlines() if re.match(r'^\s*[\w.]*(Error|Exception): ', l)]
    return head + (f' -> {roots[0]}' if roots else '')

def _proc_each(nbs_path, n_workers=2):
    "Process notebooks one by one with nbdev's own driver (what `proc_nbs` maps over), recording each failure."
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    from nbdev.serve import _proc_file
    import nbdev.serve_drv
    cache = get_config().config_path / '_proc'
    jobs = [j for f in nbglob(nbs_path, func=Path) if (j := _proc_file(Path(f), cache, nbs_path)) and j[0].suffix == '.ipynb']
    failed = {}
    with ProcessPoolExecutor(n_workers, mp_context=mp.get_context('spawn')) as ex:
        futs = {ex.submit(nbdev.serve_drv.main, j): j for j in jobs}
        for fut, (src, dst, _) in futs.items():
            try: fut.result()
            except Exception as e:
                failed[src.relative_to(nbs_path).as_posix()] = _short_error(e)
                if dst.exists(): dst.unlink()   # never render a stale page for a notebook that no longer processes
    return failed

def build(force=False, mathjax_url=None, quiet=False, verbose=False):
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs

    cfg = get_config()
    nbs_path = Path(cfg.nbs_path)
    site_url = (cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/')).rstrip('/')
    if not verbose: os.environ['PYTHONWARNINGS'] = 'ignore::UserWarning'  # nbdev's "imports and other code" warnings
    failed = {}
    try: proc = Path(proc_nbs(n_workers=2, force=force))
    except Exception:
        # proc_nbs stops at the first notebook that fails; redo the rest one at a time to name every failure
        proc = get_config().config_path / '_proc'
        failed = _proc_each(nbs_path)
    if OUT.exists(): shutil.rmtree(OUT)
    OUT.mkdir()

    c = Config()
    c.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
    c.TagRemovePreprocessor.enabled = True
    c.TemplateExporter.exclude_input_prompt = True
    c.TemplateExporter.exclude_output_prompt = True
    local_mj = mathjax_url is None and (MATHJAX_LOCAL / 'MathJax.js').exists()
    if local_mj: (OUT / '_mathjax').symlink_to(MATHJAX_LOCAL, target_is_directory=True)

    def exporter_for(depth):
        cc = Config(c)
        cc.HTMLExporter.mathjax_url = ('../' * depth + '_mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe') if local_mj else (mathjax_url or MATHJAX_CDN)
        return HTMLExporter(config=cc, template_name='lab')

    # 1. read every processed notebook, note its title and output name
    src = {}
    for f in sorted(proc.rglob('*.ipynb')):
        rel = f.relative_to(proc)
        if any(p.startswith(('_', '.')) for p in rel.parts): continue
        if not (nbs_path / rel).exists(): continue  # a notebook deleted since the last build
        nb = nbformat.read(f, as_version=4)
        fm = _front_matter(nb)
        out_rel = (rel.parent / fm.get('output-file', rel.with_suffix('.html').name)).as_posix()
        src[rel.as_posix()] = (nb, fm, out_rel)
    name_map = {k: v[2] for k, v in src.items()}
    pages = {v[2]: {'title': str(v[1].get('title') or Path(k).stem), 'description': v[1].get('description'),
                    'source': f'{nbs_path.name}/{k}'} for k, v in src.items()}

    # 2. sidebar groups in sidebar.yml order; pages the sidebar does not list go to a last group
    groups, listed, warns = [], set(), []
    for section, entry in sidebar_entries(nbs_path):
        out_rel = name_map.get(entry) or (entry if entry in pages else None)
        if out_rel is None: warns.append(f'sidebar.yml lists {entry}, which is not a notebook under {nbs_path.name}/'); continue
        if not groups or groups[-1][0] != section: groups.append((section, []))
        groups[-1][1].append(out_rel); listed.add(out_rel)
    others = [r for r in sorted(pages) if r not in listed]
    if others:
        groups.append(('Not in sidebar.yml', others))
        warns += [f'{pages[r]["source"]} is not listed in sidebar.yml' for r in others]
    order = [r for _, rels in groups for r in rels]

    # 3. render each page
    for k, (nb, fm, out_rel) in src.items():
        if k in failed: continue
        nb, n_figs, _ = _prepare(nb, site_url)
        warns += [f'{nbs_path.name}/{k}: {p}' for p in description_problems(nbs_path / k)]
        warns += [f'{nbs_path.name}/{k}: cell {i} draws a figure but has no saved image output (run tools/mknb.py exec on it)'
                  for i in expected_figures(nbs_path / k)[1]]
        title = pages[out_rel]['title']
        nb.metadata['title'] = f'{title} – {cfg.title}' if out_rel != 'index.html' else title
        body, _ = exporter_for(len(Path(out_rel).parts) - 1).from_notebook_node(nb, resources={'metadata': {'name': title}})
        body = _wrap(_fix_links(_quarto_anchors(body), out_rel, name_map), title, _sidebar_html(pages, groups, out_rel), fm.get('description'))
        dest = OUT / out_rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding='utf-8')
        pages[out_rel]['figures'] = n_figs
        pages[out_rel]['has_math'] = bool(re.search(r'\$[^$\s]', ''.join(cl.source for cl in nb.cells if cl.cell_type == 'markdown')))
    for f in ('styles.css',):
        if (proc / f).exists(): shutil.copy2(proc / f, OUT / f)
    for f in nbs_path.rglob('*'):  # images a page links to (Quarto copies them into the site the same way)
        rel = f.relative_to(nbs_path)
        if f.suffix.lower() in ('.png', '.jpg', '.jpeg', '.svg', '.gif') and not any(x.startswith(('_', '.')) for x in rel.parts):
            (OUT / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, OUT / rel)

    # 4. the contents page
    rows = []
    for section, rels in groups:
        if section: rows.append(f'<h2>{html.escape(section)}</h2>')
        rows.append('<ul>' + ''.join(
            f'<li><a href="{r}">{html.escape(pages[r]["title"])}</a>'
            + (f' – {html.escape(str(pages[r]["description"]))}' if pages[r].get('description') else '') + '</li>'
            for r in rels) + '</ul>')
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Contents – {html.escape(cfg.title)}</title>'
           f'</head><body>\n' + '\n'.join(rows) + '\n</body></html>')
    (OUT / 'contents.html').write_text(_wrap(doc, 'All pages', _sidebar_html(pages, groups, 'contents.html'),
                                             f'Every page of {cfg.title}, in sidebar order'), encoding='utf-8')
    pages['contents.html'] = {'title': 'All pages', 'source': None, 'figures': 0, 'has_math': False}
    (OUT / 'pages.json').write_text(json.dumps({'order': order, 'pages': pages, 'warnings': warns, 'failed': failed}, indent=1))
    if not quiet:
        for w in warns: print('warning:', w)
        for k, m in failed.items(): print(f'FAILED to process {nbs_path.name}/{k}: {m}')
        print(f'MathJax: {"local " + str(MATHJAX_LOCAL) if local_mj else (mathjax_url or MATHJAX_CDN)}')
        print(f'wrote {len(order)} pages + contents.html to {OUT.relative_to(ROOT)}/ (open {OUT.relative_to(ROOT)}/index.html)')
    return pages, warns, failed

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--force', action='store_true', help='reprocess every notebook (ignore the _proc cache)')
    p.add_argument('--mathjax-url', default=None,
                   help=f'MathJax 2 script URL (default: Debian libjs-mathjax if installed, linked as _preview/_mathjax, else {MATHJAX_CDN})')
    p.add_argument('--verbose', action='store_true', help="show nbdev's warnings while processing")
    a = p.parse_args()
    _, _, failed = build(force=a.force, mathjax_url=a.mathjax_url, verbose=a.verbose)
    if failed:
        print(f'{len(failed)} notebooks failed to process (their pages are missing); nbdev executes cells that mix '
              'imports with other code, so keep imports in cells of their own')
        sys.exit(1)

if __name__ == '__main__':  # proc_nbs uses process pools: keep the guard
    sys.path.insert(0, str(ROOT))
    main()
