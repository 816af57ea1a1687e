#!/usr/bin/env bash
# The web console on the demo: runs the demo when ./bas-demo has none, then starts a local
# OpenID Connect provider (tests/fake_oidc.py, with an owner admin, a school admin and a
# teacher) and `bas web` with its own TLS from a throw-away CA in bas-demo/web-tls/, and prints
# the URL, the CA file to trust and the logins (tests/demo_console.py). Ctrl+C stops both.
#   bash scripts/demo-web.sh            # https://127.0.0.1:8443
#   BAS_WEB_PORT=9443 BAS_DEMO_DIR=/tmp/demo bash scripts/demo-web.sh   # another port or demo
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
command -v openssl >/dev/null || apt_install openssl
DIR="${BAS_DEMO_DIR:-bas-demo}"
if [ ! -f "$DIR/state.sqlite" ] || [ ! -f "$DIR/bas.toml" ]; then
  echo "demo-web: no demo in $DIR yet: running \`bas demo --dir $DIR\` first"
  .venv/bin/bas demo --dir "$DIR"
fi
exec .venv/bin/python -m tests.demo_console --dir "$DIR" "$@"
