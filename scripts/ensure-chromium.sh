#!/usr/bin/env bash
# The report and live-view tests drive headless Chromium (Debian's package; Playwright's own browser
# download cannot work without internet). Install it when missing and we are allowed to; otherwise
# those tests skip and say why.
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the browser tests..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped" >&2
else
  echo "note: /usr/bin/chromium not found; browser tests will be skipped (apt-get install chromium)" >&2
fi
exit 0
