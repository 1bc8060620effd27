#!/usr/bin/env bash
# Headless Chromium for the web app's browser tests (Debian's chromium and chromium-driver) and the
# axe-core accessibility engine (npm package, into a cache folder: nothing is fetched at test time).
#   scripts/browser.sh available   exit 0 if chromium, chromedriver and axe.min.js are there
#   scripts/browser.sh install     apt-get install chromium chromium-driver (needs root), npm install axe-core
#   scripts/browser.sh axe         print the path of axe.min.js
set -euo pipefail
cmd=${1:-}
cache=${FHIR_TEST_BROWSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fhir-referral-hub}
axe="$cache/node_modules/axe-core/axe.min.js"
AXE_VERSION=4.14.1
case "$cmd" in
  available)
    command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -f "$axe" ] ;;
  install)
    if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q >&2 && apt-get install -y -q chromium chromium-driver >&2
    fi
    if [ ! -f "$axe" ]; then
      command -v npm >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q >&2 && apt-get install -y -q npm >&2; }
      mkdir -p "$cache"
      npm install --prefix "$cache" --no-save --no-audit --no-fund "axe-core@$AXE_VERSION" >&2
    fi ;;
  axe) echo "$axe" ;;
  *) echo "usage: $0 available|install|axe" >&2; exit 2 ;;
esac
