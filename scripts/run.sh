#!/usr/bin/env bash
# The README's main command. Today it builds the `appliance` program, makes a file-backed disk and a thin image
# under .data/, serves the image over NBD for a moment, runs three monitors (a Paxos quorum on loopback ports) and
# asks them for the cluster's status, creates a pool, and shows what exists. Later issues grow it into a local
# three-node cluster on file-backed disks with an NBD export and a FUSE mount.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dotnet >/dev/null || { echo "error: dotnet is not on PATH; install the .NET 10 SDK first" >&2; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "== building"
dotnet build -c Release -v quiet -nologo node/Cli/Appliance.Cli.csproj
program=node/Cli/bin/Release/net10.0/appliance.dll
appliance() { dotnet "$program" "$@"; }

data=${APPLIANCE_DATA:-.data}
mkdir -p "$data/images"
data=$(cd "$data" && pwd)
disk="$data/disk0.img"
echo
echo "== appliance --help"
appliance --help
echo
echo "== appliance parts"
appliance parts
echo
echo "== a file-backed disk: $disk"
[[ -e $disk ]] || appliance device create "$disk" --size 1G
appliance device info "$disk"
echo
echo "== a thin-provisioned image, served over NBD"
[[ -e $data/images/demo/vm1 ]] || appliance image create --local "$data/images" demo/vm1 --size 4G
appliance image ls --local "$data/images"
sock="$data/nbd.sock"
rm -f "$sock"
# Started directly (not through the shell function) so that $! is the server's own PID, which we stop below.
dotnet "$program" nbd serve --local "$data/images" --unix "$sock" &
server=$!
pids=("$server")
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$sock"
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
if command -v nbdinfo >/dev/null; then
  nbdinfo "nbd+unix:///demo/vm1?socket=$sock"
else
  echo "(install libnbd-bin to look at the export with nbdinfo; qemu, nbdcopy and fio's nbd engine work as well)"
fi
echo
echo "== three monitors (Multi-Paxos) on loopback"
conf="$data/conf"
if [[ ! -e $conf/cluster.conf ]]; then
  base=$((20000 + RANDOM % 20000))
  appliance mon bootstrap --conf-dir "$conf" --mon a=127.0.0.1:$base --mon b=127.0.0.1:$((base + 1)) --mon c=127.0.0.1:$((base + 2))
fi
for m in a b c; do
  dotnet "$program" mon run --conf-dir "$conf" --name $m --data "$data/mon-$m" 2>>"$data/mon-$m.log" &
  pids+=("$!")
done
appliance status --conf-dir "$conf"
appliance pool ls --conf-dir "$conf" | grep -q '^[0-9].* demo ' || appliance pool create demo --size 3 --conf-dir "$conf"
appliance pool ls --conf-dir "$conf"
appliance mon status --conf-dir "$conf"
echo
echo "The export and the monitors stop with this script; keep one running with:"
echo "  dotnet node/Cli/bin/Release/net10.0/appliance.dll nbd serve --local $data/images --unix $sock"
echo "  dotnet node/Cli/bin/Release/net10.0/appliance.dll mon run --conf-dir $conf --name a --data $data/mon-a   (and b, c)"
