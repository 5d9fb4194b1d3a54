#!/usr/bin/env bash
# Register the deployments in deployments/prefect.yaml with the Prefect server at $PREFECT_API_URL.
# Usage: deployments/deploy.sh [extra `prefect deploy` options]
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIEND_REPO="$PWD"   # frozen into the deployment: the worker runs the flow from this checkout
PREFECT="prefect"
[ -x .venv/bin/prefect ] && PREFECT=".venv/bin/prefect"
: "${PREFECT_API_URL:?set PREFECT_API_URL, e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api}"
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
exec "$PREFECT" --no-prompt deploy --prefect-file deployments/prefect.yaml --all "$@"
