#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver from the distribution's packages (Debian:
# `chromium`, `chromium-driver`) for the browser test of `samrt serve`'s page
# (tests/serve_page.rs). Idempotent: when both are on PATH it does nothing. Needs root (or
# sudo) and apt. Prints the chromedriver path last.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  command -v chromedriver
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromedriver
