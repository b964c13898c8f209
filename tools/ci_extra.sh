#!/usr/bin/env bash
# Extra CI checks (called by .ci/run when executable): the docs preview builds, every page passes the headless-Chromium
# browser check, and README.md is current with nbs/index.ipynb. Needs the project venv active (as in .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
# standalone use: pick up the project venv when none is active (.ci/run activates .venv-ci before calling this)
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  for v in .venv-ci .venv; do [[ -f $v/bin/activate ]] && { source $v/bin/activate; break; }; done
fi
export MPLBACKEND=${MPLBACKEND:-Agg}
rc=0
say() { echo "--- $* ($(( $(date +%s) - t0 ))s)"; }

# Debian's chromium for the browser check and libjs-mathjax so the preview typesets LaTeX offline.
# CI runs as root; an apt failure is tolerated here and then reported by the browser check as "NOT RUN" (a failure).
need=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[[ -f /usr/share/javascript/mathjax/MathJax.js ]] || need+=(libjs-mathjax)
if (( ${#need[@]} )); then
  say "apt-get install ${need[*]}"
  SUDO=""; [[ $(id -u) != 0 ]] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if ! { $SUDO apt-get update -qq >/dev/null 2>&1 &&
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; }; then
    echo "apt-get could not install ${need[*]}: the browser check cannot run"
  fi
fi

say "docs preview: python tools/preview_docs.py"
python tools/preview_docs.py || { echo "docs preview: FAILED to build"; rc=1; }

say "browser check: python tools/check_docs.py"
if [[ -f _preview/pages.json ]]; then
  python tools/check_docs.py --self-test; brc=$?
  if [[ $brc == 2 ]]; then echo "browser check: NOT RUN (no Chromium) -- counted as a failure"; fi
  (( brc == 0 )) || rc=1
else
  echo "browser check: NOT RUN (no preview was built) -- counted as a failure"; rc=1
fi

say "README.md is current: python tools/make_readme.py --check"
python tools/make_readme.py --check || rc=1

say "extra checks $([[ $rc == 0 ]] && echo ok || echo FAILED)"
exit $rc
