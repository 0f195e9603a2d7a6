#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 60), one after the other, each corpus seeded
# from the files leadsync ships. Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly
# compiler, or the stable one told to act as nightly: RUSTC_BOOTSTRAP=1 (set below).
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(webhook_body signature rules mapping config snapshot)

seed() {
    local target="$1"
    shift
    mkdir -p "corpus/$target"
    for f in "$@"; do cp "$f" "corpus/$target/seed-$(basename "$f")"; done
}
seed rules ../mappings/lifecycle.toml
seed mapping ../mappings/salesforce.toml
seed config ../leadsync.example.toml
seed snapshot ../examples/snapshots/*.json
mkdir -p corpus/webhook_body corpus/signature
printf '[{"subscriptionType":"contact.propertyChange","objectId":51,"propertyName":"email","propertyValue":"a@b.co","occurredAt":1764000000000,"changeSource":"CRM_UI","eventId":7}]' \
    > corpus/webhook_body/seed-delivery.json
printf '{"vid":7,"canonical-vid":9,"properties":{"hs_object_id":{"value":"9"}}}' > corpus/webhook_body/seed-workflow.json
printf 'https://leadsync.example.com/webhooks/hubspot%%3Fa%%3D1\xff1764000000000\xffK36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=\xff[]' \
    > corpus/signature/seed-request

for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" -- -max_total_time="$secs" -print_final_stats=1
done
