#!/usr/bin/env bash
# Installs what the browser end-to-end test (tests/e2e, run by `cargo test` through
# tests/browser.rs) and the VS Code client test (tests/vscode_client.rs) need: Debian's chromium
# (plus an emoji font for readable screenshots) and the npm packages pinned in each
# package-lock.json. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing+=(fonts-noto-color-emoji)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Playwright drives the Debian chromium; it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error
# The VS Code extension's packages (its protocol client is tested by tests/vscode_client.rs).
(cd ../../integrations/vscode && npm ci --no-audit --no-fund --loglevel=error)
echo "setup.sh: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), node $(node --version), playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version')"
