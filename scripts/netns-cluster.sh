#!/usr/bin/env bash
# A test cluster of N whole nodes on this machine, each in a network namespace of its own with its own address on a
# bridge, provisioned with the commands a real node runs: `appliance bootstrap` on n1, `appliance join-token NAME`
# there and `appliance join TOKEN` on each other node (monitors while there are fewer than 3), `appliance disk add` of
# a sparse file on each; then pool `data`, image data/disk0 served by `appliance nbd serve` on n1's address, and
# filesystem fs0 mounted on n1. Without systemd: the daemons are background processes of each node (pid files and
# logs in the node's data directory). Needs root, iproute2, nftables and util-linux (nsenter).
#
#   scripts/netns-cluster.sh up [N]          bring up N nodes (default 3)
#   scripts/netns-cluster.sh exec K CMD...   run `appliance CMD...` on node nK (its namespace, conf and data)
#   scripts/netns-cluster.sh partition K     cut node nK off from every other node and this machine (TCP refused)
#   scripts/netns-cluster.sh heal K          remove that cut
#   scripts/netns-cluster.sh down            stop everything and remove the namespaces, bridge, veth and mounts
#
# State lives in $APPLIANCE_DATA/netns (default .data/netns): node K's configuration in nK/conf, its data in nK/data.
# Names: namespaces apl-hub and apl-nK, the root veth apl-host (address .254), the /24 in $NETNS_SUBNET (default
# 10.251.0; it must be unused on this machine). Node nK is .K; monitors listen on port 6789, the NBD server on
# n1:10809. Everything it makes, `down` removes; it touches nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

data=${APPLIANCE_DATA:-.data}
mkdir -p "$data"
state="$(cd "$data" && pwd)/netns"
subnet=${NETNS_SUBNET:-10.251.0}
program=node/Cli/bin/Release/net10.0/appliance.dll
hub=apl-hub
hostlink=apl-host

die() { echo "error: $*" >&2; exit 1; }
ns() { echo "apl-n$1"; }
addr() { echo "$subnet.$1"; }

# `appliance ARGS` on node K: its network namespace only (nsenter --net: a FUSE mount it makes is one of this
# machine's), its conf and data directories as /etc/appliance and /var/lib/appliance would be on a real node.
on() {
  local k=$1; shift
  APPLIANCE_CONF_DIR="$state/n$k/conf" APPLIANCE_DATA_DIR="$state/n$k/data" \
    nsenter --net="/run/netns/$(ns "$k")" -- dotnet "$program" "$@"
}

nodes() { ls -d "$state"/n[0-9]* 2>/dev/null | sed "s|.*/n||" | sort -n; }

preflight() {
  [ "$(id -u)" = 0 ] || die "network namespaces need root: run it with sudo"
  for tool in ip nft nsenter dotnet; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install iproute2 nftables util-linux; dotnet: the .NET 10 SDK)"
  done
}

up() {
  local n=${1:-3}
  [[ "$n" =~ ^[1-9]$ ]] || die "up N: give 1 to 9 nodes"
  preflight
  [ ! -e /run/netns/$hub ] || die "a netns cluster is up already (namespace $hub); run '$0 down' first"
  ! ip -4 -o addr show | grep -q " $subnet\." || die "$subnet.0/24 is in use on this machine; set NETNS_SUBNET to a free /24 (e.g. 10.252.0)"
  echo "== building"
  dotnet build -c Release -v quiet -nologo node/Cli/Appliance.Cli.csproj
  rm -rf "$state"
  mkdir -p "$state"

  echo "== network $subnet.0/24: bridge in $hub, this machine at $(addr 254) on $hostlink"
  ip netns add $hub
  ip -n $hub link add br0 type bridge
  ip -n $hub link set br0 up
  ip link add $hostlink type veth peer name h-host netns $hub
  ip -n $hub link set h-host master br0 up
  ip addr add "$(addr 254)/24" dev $hostlink
  ip link set $hostlink up
  for k in $(seq 1 "$n"); do
    ip netns add "$(ns "$k")"
    ip -n $hub link add "h-n$k" type veth peer name eth0 netns "$(ns "$k")"
    ip -n $hub link set "h-n$k" master br0 up
    ip -n "$(ns "$k")" addr add "$(addr "$k")/24" dev eth0
    ip -n "$(ns "$k")" link set eth0 up
    ip -n "$(ns "$k")" link set lo up
    mkdir -p "$state/n$k/conf" "$state/n$k/data"
    echo "node n$k: namespace $(ns "$k"), address $(addr "$k")"
  done

  echo "== n1: appliance bootstrap"
  on 1 bootstrap --mon-ip "$(addr 1)" --name n1
  for k in $(seq 2 "$n"); do
    echo "== n$k: appliance join (token from n1's appliance join-token n$k)"
    token=$(on 1 join-token "n$k")
    on "$k" join "$token" --mon-ip "$(addr "$k")"
  done
  for k in $(seq 1 "$n"); do
    echo "== n$k: appliance disk add (a 4 GiB sparse file)"
    on "$k" disk add "$state/n$k/disk0.img" --size 4G
  done
  local size=$(( n < 3 ? n : 3 ))
  echo "== pool data ($size copies), image data/disk0, filesystem fs0"
  on 1 pool create data --size "$size"
  on 1 image create data/disk0 --size 4G
  on 1 fs create fs0
  mkdir -p "$state/n1/mnt/fs0"
  on 1 fs mount fs0 "$state/n1/mnt/fs0" --log "$state/n1/data/log/fs.fs0.log"
  APPLIANCE_CONF_DIR="$state/n1/conf" nsenter --net="/run/netns/$(ns 1)" -- setsid sh -c 'exec "$@" </dev/null >>"'"$state/n1/data/log/nbd.log"'" 2>&1' sh \
    dotnet "$program" nbd serve --listen "$(addr 1):10809" --conf-dir "$state/n1/conf" &
  echo $! >"$state/nbd.pid"
  on 1 status
  cat <<EOF

The cluster is up: nodes $(for k in $(seq 1 "$n"); do printf 'n%s=%s ' "$k" "$(addr "$k")"; done)
  $0 exec 2 status                       any appliance command on node n2
  qemu-io -f raw nbd://$(addr 1):10809/data/disk0 -c 'write -P 1 0 1M'     the image, from this machine
  ls $state/n1/mnt/fs0                  the filesystem, mounted by n1
  $0 partition 3 ; $0 heal 3           cut node n3 off, and back
  $0 down                              stop and remove everything
EOF
}

partition() {
  local k=${1:?partition K}
  [ -e "/run/netns/$(ns "$k")" ] || die "no node n$k"
  # Both ways, TCP refused with a reset (resets themselves pass, or the refusal would be silent), the rest dropped;
  # the connections open across the cut are reset as a dead machine's would time out.
  ip netns exec "$(ns "$k")" nft -f - <<EOF
table inet apl_cut
delete table inet apl_cut
table inet apl_cut {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "eth0" tcp flags & rst == rst accept
    iifname "eth0" meta l4proto tcp reject with tcp reset
    iifname "eth0" drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "eth0" tcp flags & rst == rst accept
    oifname "eth0" meta l4proto tcp reject with tcp reset
    oifname "eth0" drop
  }
}
EOF
  ip netns exec "$(ns "$k")" ss -K -t -n "( dst $subnet.0/24 ) and not ( dst $(addr "$k") )" >/dev/null
  echo "n$k cut off from every other node and this machine; '$0 heal $k' heals it"
}

heal() {
  local k=${1:?heal K}
  ip netns exec "$(ns "$k")" nft -f - <<<$'table inet apl_cut\ndelete table inet apl_cut'
  echo "n$k healed"
}

down() {
  preflight
  # Orderly first: the mount, the NBD server, then each node's daemons (`node stop`).
  for m in $(awk -v d="$state/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    on 1 fs umount "$m" || umount -l "$m"
  done
  if [ -f "$state/nbd.pid" ]; then
    pid=$(cat "$state/nbd.pid")
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "appliance.dll nbd serve"; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    fi
    rm -f "$state/nbd.pid"
  fi
  for k in $(nodes | sort -rn); do
    [ -e "/run/netns/$(ns "$k")" ] && on "$k" node stop || true
  done
  # Then whatever still runs in the namespaces, and the namespaces themselves (veths go with them).
  for k in $(nodes); do
    if [ -e "/run/netns/$(ns "$k")" ]; then
      for pid in $(ip netns pids "$(ns "$k")"); do kill -KILL "$pid"; done
      ip netns del "$(ns "$k")"
    fi
  done
  for m in $(awk -v d="$state/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  [ ! -e /run/netns/$hub ] || ip netns del $hub
  ip link show $hostlink >/dev/null 2>&1 && ip link del $hostlink || true
  echo "down: no namespace, veth, mount or process of the netns cluster is left (its data stays in $state)"
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  partition) partition "${2:-}" ;;
  heal) heal "${2:-}" ;;
  exec) k=${2:?exec K CMD...}; shift 2; on "$k" "$@" ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
