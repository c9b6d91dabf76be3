#!/usr/bin/env bash
# Emacs 28 (terminal build) and eglot from Debian, for tests/test_emacs.py. Quiet and idempotent:
# does nothing when Emacs can already load eglot.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Debian's elpa-* packages live in /usr/share/emacs/site-lisp/elpa; `emacs -Q` (as the test runs
# it) activates them only when asked to.
have_eglot() {
  command -v emacs >/dev/null 2>&1 &&
    emacs --batch -Q --eval "(progn (require 'package)
      (add-to-list 'package-directory-list \"/usr/share/emacs/site-lisp/elpa\")
      (package-activate-all) (require 'eglot))" >/dev/null 2>&1
}

have_eglot && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "emacs.sh: no apt-get here; install Emacs >= 28.1 with eglot yourself" >&2
  exit 1
fi
apt-get install -y -qq --no-install-recommends emacs-nox elpa-eglot </dev/null >/dev/null 2>&1
have_eglot
