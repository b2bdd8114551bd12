#!/usr/bin/env bash
# Debian packages some tests drive: headless Chromium for the report and live-view tests
# (Playwright's own browser download cannot work without internet) and HAProxy for the
# multi-replica test. Installs what is missing when we are root with apt-get; otherwise those
# tests skip and say why.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian ${missing[*]} for the tests that use them..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "warning: could not install ${missing[*]}; the tests that need them will be skipped" >&2
else
  echo "note: ${missing[*]} not found; the tests that need them will be skipped (apt-get install ${missing[*]})" >&2
fi
exit 0
