#!/usr/bin/env bash
# /metrics tests (test/e2e/workers.test.ts): the exposition is checked by Prometheus's
# own parser and linter, `promtool check metrics`, from Debian's `prometheus` package.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
command -v promtool >/dev/null || apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
