#!/usr/bin/env bash
# Installs what Rateflow needs on a fresh Debian machine with Node.js 20+: the services it starts
# (nats-server; mosquitto and its clients for the MQTT adapter; util-linux `logger` for syslog tests;
# openssl for the MQTT TLS tests; procps' pgrep for the tests), the npm packages, and the compiled JavaScript. Safe to run again: it
# installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# A program on PATH, or in the system directories Debian installs daemons in (/usr/sbin is on root's PATH only;
# Rateflow looks there too, pipeline/services/program.ts).
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/local/sbin/$1" ] || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
need=()
has nats-server || need+=(nats-server)
has mosquitto || need+=(mosquitto)
has mosquitto_pub || need+=(mosquitto-clients)
has logger || need+=(bsdutils)
has openssl || need+=(openssl)   # the MQTT TLS tests make their certificates with it
has pgrep || need+=(procps)      # the tests find the servers they stop by it (slim images lack it)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${need[*]} with apt-get" >&2
  $sudo apt-get update -qq
  # Through env: sudo resets the environment, and a DEBIAN_FRONTEND set before it would not reach apt-get.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# npm install, not npm ci: the registry reachable here holds only the linux-x64 builds of chDB's and
# msgpackr-extract's platform packages, so the lock file cannot list the other platforms' optional
# packages and npm ci refuses it. npm install still installs the versions package-lock.json pins.
npm install --no-fund --no-audit --loglevel=error
npm run --silent build
