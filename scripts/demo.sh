#!/usr/bin/env bash
# Run the demo: a generated school owner in SQLite, a first sync (itslearning and Feide
# written as files, AD and Microsoft 365 as plans), the changelog, one person
# explained, and a second sync that changes nothing. Output lands in ./bas-demo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/bas demo "$@"
