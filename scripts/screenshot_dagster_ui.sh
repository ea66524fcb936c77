#!/usr/bin/env bash
# Screenshots of the Dagster UI for the docs (docs/dagster-*.png), taken with headless Chromium.
# Documentation only: no test runs this.
#
# Needs Chromium (Debian: `apt-get install -y chromium`) and a running platform with an import
# done, e.g.:
#
#   .venv/bin/numbase up --demo        # in another terminal; wait until the demo file is imported
#   scripts/screenshot_dagster_ui.sh   # or: DAGSTER_URL=http://127.0.0.1:13000 scripts/...
#
# Environment: DAGSTER_URL (default http://127.0.0.1:3000), OUT_DIR (default docs),
# BUDGET_MS (virtual time Chromium gives the page to render; default 20000 - raise it when a
# shot comes out blank), CHROMIUM (default: chromium).
set -euo pipefail

DAGSTER_URL=${DAGSTER_URL:-http://127.0.0.1:3000}
OUT_DIR=${OUT_DIR:-docs}
BUDGET_MS=${BUDGET_MS:-20000}
CHROMIUM=${CHROMIUM:-chromium}

if ! curl -fsS "$DAGSTER_URL/server_info" >/dev/null; then
    echo "no Dagster webserver at $DAGSTER_URL (start \`numbase up --demo\` first)" >&2
    exit 1
fi
# The "join the community" dialog shows once per instance on localhost: mark it seen (what its
# Skip button does) so it does not cover the shots.
curl -fsS -X POST "$DAGSTER_URL/graphql" -H 'Content-Type: application/json' \
    -d '{"query": "mutation { setNuxSeen }"}' >/dev/null
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

shot() {  # shot <path under the UI> <png> [CSS viewport width,height]; the PNG is 1600x1000
    local viewport=${3:-1600,1000}
    local scale
    scale=$(python3 -c "print(1600 / int('$viewport'.split(',')[0]))")
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$profile" --window-size="$viewport" \
        --force-device-scale-factor="$scale" \
        --virtual-time-budget="$BUDGET_MS" --screenshot="$2" "$DAGSTER_URL$1" 2>/dev/null
    echo "$2: $(stat -c %s "$2") bytes <- $DAGSTER_URL$1"
}

# The asset graph from the import asset down: phone_numbers (group sftp) feeding the dbt staging
# views, the rollup and the conversion marts. (The global /asset-groups page opens zoomed in on
# a part of this graph; the asset's lineage tab fits it all.) A larger CSS viewport is scaled
# down to 1600x1000.
shot "/assets/phone_numbers?view=lineage&lineageScope=downstream&lineageDepth=6" \
    "$OUT_DIR/dagster-asset-graph.png" 2400,1500
# The import asset's partitions (one per file that came through the inbox), the first one
# selected with its materialization metadata (rows read, inserted, duplicates, invalid...).
partition=$(curl -fsS -X POST "$DAGSTER_URL/graphql" -H 'Content-Type: application/json' -d \
    '{"query": "{ assetNodeOrError(assetKey: {path: [\"phone_numbers\"]}) { ... on AssetNode { partitionKeys } } }"}' |
    python3 -c 'import json, sys, urllib.parse as u; keys = json.load(sys.stdin)["data"]["assetNodeOrError"]["partitionKeys"]; print(u.quote(keys[0], safe="") if keys else "")')
shot "/assets/phone_numbers?view=partitions&partition=$partition" "$OUT_DIR/dagster-import-partitions.png"
