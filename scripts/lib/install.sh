# Sourced by scripts/quickstart and scripts/test (the README's two commands): how this
# checkout gets installed, written once. Needs ROOT (the checkout) and PY (the interpreter).

say() { printf '%s\n' "$*"; }
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# Debian/Ubuntu packages (root, or sudo available); fails where there is no apt-get
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then command -v sudo >/dev/null 2>&1 || return 1; sudo="sudo"; fi
  say "==> installing $* with apt-get"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q >/dev/null \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# pip install -e SPEC into PY, or into ROOT/.venv (made here) when PY takes no user packages
# (Debian's python3: PEP 668, or no pip) or a .venv is there already; PY is then the
# virtualenv's python.
pip_install_checkout() {
  local spec=$1 log
  if [ ! -x "$ROOT/.venv/bin/python" ] && "$PY" -m pip --version >/dev/null 2>&1; then
    log=$(mktemp)
    if "$PY" -m pip install -q --disable-pip-version-check -e "$spec" 2>"$log"; then
      rm -f "$log"; return 0
    fi
    if ! grep -q externally-managed "$log"; then cat "$log" >&2; rm -f "$log"; die "pip install failed"; fi
    rm -f "$log"
  fi
  say "==> installing into the virtualenv $ROOT/.venv ($PY takes no user packages)"
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PY" -m venv "$ROOT/.venv" 2>/dev/null || { rm -rf "$ROOT/.venv"; apt_install python3-venv \
      && "$PY" -m venv "$ROOT/.venv"; } || die "cannot create a virtualenv (install python3-venv)"
  fi
  PY="$ROOT/.venv/bin/python"
  "$PY" -m pip install -q --disable-pip-version-check -e "$spec" || die "pip install failed"
}
