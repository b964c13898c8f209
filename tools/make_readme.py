"""Render README.md from nbs/index.ipynb without Quarto (what `nbdev_readme` does where Quarto exists).

Markdown cells are copied verbatim, code cells become ```python blocks (nbdev directives and hidden cells dropped),
text outputs are shown as indented blocks and PNG figures are written to index_files/ and linked.
Run `python tools/make_readme.py` after executing nbs/index.ipynb; `--check` exits 1 if README.md is out of date.
"""
import base64, re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.*)$')

def directives(src):
    return [m.group(1).strip() for line in src.splitlines() if (m := DIRECTIVE.match(line))]

def render(nb_path=ROOT / 'nbs' / 'index.ipynb', fig_dir='index_files'):
    nb = nbformat.read(nb_path, as_version=4)
    parts, figs = [], {}
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            parts.append(cell.source.strip()); continue
        ds = directives(cell.source)
        if any(d in ('hide', 'exporti', 'include: false') or d.startswith(('default_exp', 'exporti')) for d in ds):
            continue
        code = '\n'.join(l for l in cell.source.splitlines() if not DIRECTIVE.match(l)).strip()
        if code and 'hide_input' not in ds and 'echo: false' not in ds:
            parts.append(f'```python\n{code}\n```')
        if 'hide_output' in ds or 'output: false' in ds: continue
        for out in cell.get('outputs', []):
            text = None
            if out.output_type == 'stream': text = out.text
            elif out.output_type in ('execute_result', 'display_data'):
                data = out.get('data', {})
                if 'image/png' in data:
                    name = f'{fig_dir}/figure-{len(figs) + 1}.png'
                    figs[name] = base64.b64decode(data['image/png'])
                    parts.append(f'![]({name})'); continue
                text = data.get('text/plain')
            if text: parts.append('\n'.join('    ' + l for l in text.rstrip().splitlines()))
    # the notebook's title block (`# title` + `> summary`) is already the first markdown cell
    return '\n\n'.join(parts) + '\n', figs

def main():
    md, figs = render()
    readme = ROOT / 'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == md
        print('README.md is ' + ('current' if ok else 'out of date: run python tools/make_readme.py'))
        sys.exit(0 if ok else 1)
    readme.write_text(md)
    out = ROOT / 'index_files'
    if out.exists():
        for f in out.glob('figure-*.png'): f.unlink()
    for name, data in figs.items():
        (ROOT / name).parent.mkdir(exist_ok=True)
        (ROOT / name).write_bytes(data)
    print(f'wrote README.md ({len(md)} chars, {len(figs)} figures)')

if __name__ == '__main__':
    main()
