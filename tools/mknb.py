"""Notebook authoring helper (outside the repo).

Source format (.nbsrc): cells separated by marker lines:
    #%% md      -> a markdown cell follows
    #%%         -> a code cell follows
Usage:
    python mknb.py build SRC.nbsrc OUT.ipynb [--execute]   # write (and optionally execute, saving outputs)
    python mknb.py src NB.ipynb > NB.nbsrc                 # dump an existing notebook to source format
    python mknb.py exec NB.ipynb                           # execute in place (skips slow/cuda/eval:false cells)
"""
import sys, json, re, os
import nbformat

SKIP = re.compile(r'^#\|\s*(slow|cuda|eval:\s*false)\b', re.M)

def parse(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = '\n'.join(buf).strip('\n')
        if kind == 'md': cells.append(nbformat.v4.new_markdown_cell(src))
        else: cells.append(nbformat.v4.new_code_cell(src))
    for line in text.split('\n'):
        if line.rstrip() == '#%% md': flush(); kind, buf = 'md', []
        elif line.rstrip() == '#%%': flush(); kind, buf = 'code', []
        else:
            if kind is None and line.strip(): raise SystemExit('text before the first #%% marker')
            buf.append(line)
    flush()
    return cells

def build(src, out, execute=False):
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(open(src).read())
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    for i, c in enumerate(nb.cells): c['id'] = f"c{i:03d}"
    nbformat.write(nb, out)
    if execute: run(out)

def run(path):
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    d = os.path.dirname(os.path.abspath(path))
    client = NotebookClient(nb, timeout=1200, kernel_name='python3', resources={'metadata': {'path': d}})
    os.environ.setdefault('IN_TEST', '')
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != 'code': continue
            if SKIP.search(cell.source): cell.outputs = []; cell.execution_count = None; continue
            client.execute_cell(cell, i)
    nbformat.write(nb, path)

def dump(path):
    nb = nbformat.read(path, as_version=4)
    out = []
    for c in nb.cells:
        out.append('#%% md' if c.cell_type == 'markdown' else '#%%')
        out.append(c.source)
        out.append('')
    sys.stdout.write('\n'.join(out))

if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'build': build(sys.argv[2], sys.argv[3], '--execute' in sys.argv)
    elif cmd == 'src': dump(sys.argv[2])
    elif cmd == 'exec': run(sys.argv[2])
    else: raise SystemExit(__doc__)
