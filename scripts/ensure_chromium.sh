#!/usr/bin/env bash
# The report test renders the HTML report in headless Chromium (Debian's package).
# Installs it when missing and we are allowed to (root); otherwise that one test is skipped.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report browser test will be skipped" >&2
else
  echo "note: chromium not installed (not root); the report browser test will be skipped" >&2
fi
