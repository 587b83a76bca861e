#!/usr/bin/env bash
# The browser tests (tests/e2e/test_api_docs_browser.py, tests/e2e/test_web_ui_browser.py)
# render /docs and the Temporal Web UI in a real headless Chromium: Debian's package (no
# Playwright or Selenium download, which would need the internet). Safe to re-run: installs
# only when it is missing. Prints what it did; fails if it cannot.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
[ "$(id -u)" = 0 ] || { echo "ensure-browser: must run as root to install chromium" >&2; exit 1; }
echo "ensure-browser: installing chromium (Debian package)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Without recommends: no desktop integration or extra fonts beyond its own dependencies.
apt-get install -y -q --no-install-recommends chromium
command -v chromium >/dev/null 2>&1 || { echo "ensure-browser: chromium is still not on PATH" >&2; exit 1; }
