#!/usr/bin/env bash
# The round trip with real processes on loopback, as a person at a terminal
# would run it: a fake tenant (fakemta tenant), the relay (recallrelay serve
# with recallrelay.yaml and rules.yaml beside this script), a fake signature
# service (fakemta vendor), and Exchange-like mail (fakemta send --generate).
# The tenant compares every delivery with the message as it was sent (what
# recall needs must arrive byte for byte) and exits once every message has
# arrived; the script prints what it received and the relay's log lines,
# then stops everything and exits with the tenant's status. Ports: 2525,
# 2526, 10025, 10026 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."

work="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work" /tmp/recallrelay-demo
}
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	for _ in $(seq 100); do listening "$1" && return 0; sleep 0.1; done
	echo "run.sh: nothing listens on 127.0.0.1:$1" >&2
	exit 1
}
for port in 2525 2526 10025 10026; do
	if listening "$port"; then echo "run.sh: 127.0.0.1:$port is in use" >&2; exit 1; fi
done

echo "building recallrelay and fakemta"
go build -o "$work/recallrelay" ./cmd/recallrelay
go build -o "$work/fakemta" ./cmd/fakemta
export RECALLRELAY_KEY_K1="base64:$(head -c 32 /dev/urandom | base64)"

"$work/recallrelay" check --config deploy/demo/recallrelay.yaml
# The messages as Exchange Online sends them, for the tenant to compare with.
"$work/fakemta" generate --seed 1 --out "$work/sent" >/dev/null
"$work/fakemta" tenant --listen 127.0.0.1:10026 --compare-dir "$work/sent" \
	--expect all --expect-timeout 60s >"$work/tenant.log" 2>&1 & tenant_pid=$!
pids+=("$tenant_pid")
"$work/recallrelay" serve --config deploy/demo/recallrelay.yaml 2>"$work/relay.log" & pids+=($!)
"$work/fakemta" vendor --listen 127.0.0.1:10025 --return 127.0.0.1:2526 \
	--behaviors signature-service >"$work/vendor.log" 2>&1 & pids+=($!)
for port in 10026 2525 2526 10025; do wait_port "$port"; done

echo
echo "sending generated Exchange Online messages to the relay's tenant leg"
"$work/fakemta" send --to 127.0.0.1:2525 --dir "$work/sent"
# The vendor sends back from its own queue. No log is polled: the tenant
# exits by itself once every sent message has arrived (0), when one lost
# part of its identity or after 60 s (1), and the logs are read after that.
tenant_status=0
wait "$tenant_pid" || tenant_status=$?

echo
echo "== what the tenant received and how it compares with what was sent (fakemta tenant)"
cat "$work/tenant.log"
echo
echo "== the relay's log, one line per message per leg"
grep '"message":"message"' "$work/relay.log" || true
echo
if [[ "$tenant_status" != 0 ]]; then
	echo "run.sh: the tenant exited with status $tenant_status" >&2
	exit "$tenant_status"
fi
echo "run.sh: every message arrived with its identity intact"
