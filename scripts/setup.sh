#!/usr/bin/env bash
# Installs what Rateflow needs on a fresh Debian machine with Node.js 20+: the services it starts
# (nats-server; mosquitto and its clients for the MQTT adapter; util-linux `logger` for syslog tests;
# openssl for the MQTT TLS tests), the npm packages, and the compiled JavaScript. Safe to run again: it
# installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v logger >/dev/null 2>&1 || need+=(bsdutils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # the MQTT TLS tests make their certificates with it
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${need[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# npm install, not npm ci: the registry reachable here holds only the linux-x64 builds of chDB's and
# msgpackr-extract's platform packages, so the lock file cannot list the other platforms' optional
# packages and npm ci refuses it. npm install still installs the versions package-lock.json pins.
npm install --no-fund --no-audit --loglevel=error
npm run --silent build
