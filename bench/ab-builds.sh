#!/usr/bin/env bash
# Two builds of the CLI node side by side, same config (the bench's: one upstream of two targets, access log on to
# /dev/null), alternating rounds of autocannon; CPU µs a request of each node from /proc, and after/before ratios.
#   bash bench/ab-builds.sh <dist-before> <dist-after>     e.g. a `git worktree` of the old commit, built, and ./dist
# Env: NODE (node binary, default node), ROUNDS (10), DUR (s a round, 5), CONNECTIONS (64). On 2+ cores both nodes
# share the last core and the load generator and upstreams take the others, so the two see the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
A_DIST=$(realpath "$1"); B_DIST=$(realpath "$2")
NODE=${NODE:-node}; ROUNDS=${ROUNDS:-10}; DUR=${DUR:-5}; CONNECTIONS=${CONNECTIONS:-64}
LAST=$(( $(nproc) - 1 )); REST=0; [ "$LAST" -gt 1 ] && REST=0-$(( LAST - 1 ))
dir=$(mktemp -d); pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
port () { "$NODE" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
U1=$(port); U2=$(port)
"$NODE" -e 'const h=require("http");const b=JSON.stringify({message:"hello!"});for(const p of process.argv.slice(1)){const s=h.createServer((q,r)=>{r.writeHead(200,{"content-type":"application/json","content-length":b.length});r.end(b)});s.keepAliveTimeout=65000;s.listen(+p,"127.0.0.1")}' "$U1" "$U2" & pids+=($!)
start () { # dist port -> pid
  printf 'node: { id: ab-%s, host: 127.0.0.1, port: %s }\nupstreams:\n  u: { strategy: round_robin, targets: [ { id: up-1, url: "http://127.0.0.1:%s" }, { id: up-2, url: "http://127.0.0.1:%s" } ] }\nroutes: [ { path: /, upstream: u } ]\nmetrics: { path: /metrics }\n' "$2" "$2" "$U1" "$U2" > "$dir/$2.yaml"
  NODE_ENV=production "$NODE" "$1/bin/fastify-ha-gateway.js" start --config "$dir/$2.yaml" > /dev/null 2>&1 & echo $!
}
PA=$(port); PB=$(port)
A=$(start "$A_DIST" "$PA"); pids+=("$A"); B=$(start "$B_DIST" "$PB"); pids+=("$B")
for _ in $(seq 1 120); do curl -sf "127.0.0.1:$PA/health" >/dev/null && curl -sf "127.0.0.1:$PB/health" >/dev/null && break; sleep 0.5; done
taskset -a -p -c "$LAST" "$A" >/dev/null; taskset -a -p -c "$LAST" "$B" >/dev/null
cpu () { awk '{print $14+$15}' "/proc/$1/stat"; }
run () { # pid port -> "requests bad ticks"
  local c0 n; c0=$(cpu "$1")
  n=$(taskset -c "$REST" npx autocannon -c "$CONNECTIONS" -d "$DUR" -j "http://127.0.0.1:$2/bench?x=1" 2>/dev/null |
    "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);console.log(r.requests.total,r.non2xx+r.errors+r.timeouts)})')
  echo "$n $(( $(cpu "$1") - c0 ))"
}
run "$A" "$PA" >/dev/null; run "$B" "$PB" >/dev/null # warm-up
TCK=$(getconf CLK_TCK)
echo "$("$NODE" -v), $(nproc) CPUs, $ROUNDS rounds x $DUR s, $CONNECTIONS connections; before: $A_DIST; after: $B_DIST"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then a=$(run "$A" "$PA"); b=$(run "$B" "$PB"); else b=$(run "$B" "$PB"); a=$(run "$A" "$PA"); fi
  echo "$a $b" | awk -v r="$r" -v t="$TCK" '{ua=$3*1e6/t/$1; ub=$6*1e6/t/$4; printf "round %d: before %d req (%d bad) %.1f us/req | after %d req (%d bad) %.1f us/req | after/before cpu %.3f req/s %.3f\n", r,$1,$2,ua,$4,$5,ub,ub/ua,$4/$1}'
done | tee "$dir/rounds"
med () { sort -n | awk '{a[NR]=$1} END {print (a[int((NR+1)/2)]+a[int(NR/2)+1])/2}'; }
echo "median after/before: CPU a request $(awk '{print $(NF-2)}' "$dir/rounds" | med), req/s $(awk '{print $NF}' "$dir/rounds" | med)"
