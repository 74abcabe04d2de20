# Sourced by scripts/run and scripts/test: creates the virtual environment on first use (and again
# whenever pyproject.toml changes) and installs rnnlab into it, editable, with its dev tools.
# RNNLAB_VENV picks another location; RNNLAB_TORCH pins another torch (default: the local CPU wheel).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RNNLAB_VENV:-$root/.venv}"
stamp="$venv/.rnnlab-installed"
if [ ! -x "$venv/bin/python" ]; then
  echo "rnnlab: creating $venv (first use; takes a few minutes)" >&2
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  log="$venv/install.log"
  echo "rnnlab: installing into $venv (log: $log)" >&2
  {
    "$venv/bin/python" -m pip install --upgrade pip &&
    # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU wheel
    # these machines keep on local disk. A torch that is already there (a GPU build) is kept.
    { "$venv/bin/python" -c "import torch" 2>/dev/null ||
      "$venv/bin/python" -m pip install "${RNNLAB_TORCH:-torch==2.13.0}"; } &&
    "$venv/bin/python" -m pip install -e "$root[dev]"
  } >"$log" 2>&1 || { tail -n 30 "$log" >&2; echo "rnnlab: install failed (see $log)" >&2; exit 1; }
  touch "$stamp"
fi
# Hydra finds its plugins by walking the hydra_plugins namespace, which setuptools' editable finder
# hides; a path entry for plugins/ shows it (and picks up new plugin modules without a reinstall).
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[ -f "$site/rnnlab-dev-plugins.pth" ] || echo "$root/plugins" > "$site/rnnlab-dev-plugins.pth"
