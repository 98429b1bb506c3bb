#!/usr/bin/env bash
# TLS profile and HTTP/2 tests (test/tls/profile.test.ts, test/e2e/http2.test.ts):
# `openssl s_client`, `curl --http2` and `nghttp` (Debian's nghttp2-client).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v nghttp >/dev/null || missing+=(nghttp2-client)
if [ ${#missing[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; fi
command -v openssl >/dev/null && command -v curl >/dev/null && command -v nghttp >/dev/null
