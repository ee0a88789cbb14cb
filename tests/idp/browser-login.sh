#!/usr/bin/env bash
# Test-only $BROWSER for the jit-ssh end-to-end tests: "a person" who signs in
# at the test IdP (tests/idp/idp.mjs) with curl and a cookie jar.
#
#   BROWSER=tests/idp/browser-login.sh jit-ssh login ...
#
# Environment:
#   JIT_TEST_USER         user to sign in as (default alice)
#   JIT_TEST_BROWSER_LOG  file that gets one line per invocation (the URL)
#   JIT_TEST_MODE         login (default) | ignore (never come back) |
#                         wrong-state (callback with a forged state) |
#                         cancel (callback with error=access_denied)
#
# Given an authorization URL: follows /auth -> /interaction/<uid>, posts the
# login form, follows the redirect to the client's loopback /callback.
# Given a device verification URL (/device?user_code=...): completes the
# device verification steps (xsrf form, confirm, login). URLs of
# `jit-ssh-ca dev`'s provider (/dev-idp/...) get its simpler pages.
set -euo pipefail
url="$1"
user="${JIT_TEST_USER:-alice}"
mode="${JIT_TEST_MODE:-login}"
if [[ -n "${JIT_TEST_BROWSER_LOG:-}" ]]; then
  printf '%s\n' "$url" >>"$JIT_TEST_BROWSER_LOG"
fi
[[ "$mode" == ignore ]] && exit 0

jar="$(mktemp)"
trap 'rm -f "$jar"' EXIT
http() { curl -sS --max-time 10 -b "$jar" -c "$jar" "$@"; }
redirect() { http -o /dev/null -w '%{redirect_url}' "$@"; }
xsrf() { sed -n 's/.*name="xsrf" value="\([^"]*\)".*/\1/p' | head -n1; }

# jit-ssh-ca dev's embedded provider: its pages list the users as forms.
if [[ "$url" == */dev-idp/* ]]; then
  base="${url%%/dev-idp/*}/dev-idp"
  if [[ "$url" == */dev-idp/device* ]]; then
    user_code="$(sed -n 's/.*[?&]user_code=\([^&]*\).*/\1/p' <<<"$url")"
    http --data-urlencode "user_code=$user_code" --data-urlencode "user=$user" "$base/device" | grep -q 'device-success'
    exit 0
  fi
  page="$(http "$url")"
  request_id="$(sed -n 's/.*name="request_id" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)"
  if [[ -n "$request_id" ]]; then
    callback="$(redirect --data-urlencode "request_id=$request_id" --data-urlencode "user=$user" "$base/authorize")"
  else
    callback="$(redirect "$url")"   # --auto-login: no page, straight back
  fi
  http -o /dev/null "$callback"
  exit 0
fi

if [[ "$url" == */device\?* || "$url" == */device ]]; then
  origin="${url%%/device*}"
  user_code="$(sed -n 's/.*[?&]user_code=\([^&]*\).*/\1/p' <<<"$url")"
  token="$(http "$url" | xsrf)"
  token="$(http -d "xsrf=$token" --data-urlencode "user_code=$user_code" "$origin/device" | xsrf)"
  interaction="$(redirect -d "xsrf=$token" --data-urlencode "user_code=$user_code" -d confirm=yes "$origin/device")"
  done_page="$(redirect -d "login=$user" "$interaction/login")"
  http "$done_page" | grep -q 'device-success'
  exit 0
fi

interaction="$(redirect "$url")"
resume="$(redirect -d "login=$user" "$interaction/login")"
callback="$(redirect "$resume")"
case "$callback" in
  http://127.0.0.1:*/callback\?*) ;;
  *) echo "browser-login.sh: unexpected redirect: $callback" >&2; exit 1 ;;
esac
case "$mode" in
  wrong-state) callback="$(sed 's/\([?&]state=\)[^&]*/\1forged-state/' <<<"$callback")" ;;
  cancel)
    state="$(sed -n 's/.*[?&]state=\([^&]*\).*/\1/p' <<<"$callback")"
    callback="${callback%%\?*}?error=access_denied&state=$state" ;;
esac
http -o /dev/null "$callback"
