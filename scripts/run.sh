#!/usr/bin/env bash
# The README's main command: builds the `appliance` program (Release) and brings up a local cluster on this machine
# with `appliance cluster up` — three monitors (a Paxos quorum on loopback ports) and three OSDs on sparse disk files,
# a replicated pool `data` with its copies on distinct OSDs, image data/disk0 served over NBD, filesystem fs0 mounted
# through FUSE at DIR/mnt/fs0 — then writes and reads an object, looks at the image with nbdinfo and qemu-io (when
# installed), writes a file through the mount, shows the cluster's status, runs a 5 s object bench, and leaves it running (it prints the command that stops it). Running it again starts only what is not
# running. The cluster lives in $APPLIANCE_DATA/cluster (default .data/cluster, ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dotnet >/dev/null || { echo "error: dotnet is not on PATH; install the .NET 10 SDK first" >&2; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "== building"
dotnet build -c Release -v quiet -nologo node/Cli/Appliance.Cli.csproj
program=node/Cli/bin/Release/net10.0/appliance.dll
appliance() { dotnet "$program" "$@"; }

data=${APPLIANCE_DATA:-.data}
mkdir -p "$data"
cluster="$(cd "$data" && pwd)/cluster"
echo
echo "== appliance parts"
appliance parts
echo
echo "== appliance cluster up --data $cluster"
appliance cluster up --data "$cluster"
export APPLIANCE_CONF_DIR="$cluster/conf"
echo
echo "== an object written and read back through the cluster"
echo "hello from $(hostname) at $(date -u +%FT%TZ)" >"$cluster/hello.txt"
appliance object put data hello "$cluster/hello.txt"
appliance object get data hello "$cluster/hello.back"
cmp "$cluster/hello.txt" "$cluster/hello.back" && echo "object hello: written and read back, byte for byte"
echo
echo "== appliance status"
appliance status
echo
echo "== appliance osd tree"
appliance osd tree
echo
echo "== the block device: image data/disk0 over NBD (unix socket and loopback port, as cluster up printed)"
nbd_sock="$cluster/run/nbd.sock"
nbd_tcp="$(cat "$cluster/conf/nbd.listen")"
appliance image ls
if command -v nbdinfo >/dev/null && command -v qemu-io >/dev/null; then
  nbdinfo "nbd+unix:///data/disk0?socket=$nbd_sock"
  qemu-io -f raw "nbd://$nbd_tcp/data/disk0" -c 'write -P 0x5a 1M 4M' -c 'read -P 0x5a 1M 4M' -c 'flush'
  nbdinfo --map "nbd+unix:///data/disk0?socket=$nbd_sock" | head -5
else
  echo "(nbdinfo and qemu-io are not installed: apt-get install libnbd-bin qemu-utils to look at it from here)"
fi
echo "Attach it with the kernel's client (as root):  nbd-client -unix $nbd_sock /dev/nbd0 -name data/disk0"
echo "                        or over TCP:           nbd-client -N data/disk0 ${nbd_tcp%:*} ${nbd_tcp##*:} /dev/nbd0"
echo "or with qemu:  qemu-system-x86_64 ... -drive driver=nbd,server.type=unix,server.path=$nbd_sock,export=data/disk0,reconnect-delay=30"
echo
echo "== the filesystem: fs0 mounted at $cluster/mnt/fs0 (as cluster up printed)"
mnt="$cluster/mnt/fs0"
if mountpoint -q "$mnt"; then
  echo "hello from $(hostname) at $(date -u +%FT%TZ)" >"$mnt/hello.txt"
  cat "$mnt/hello.txt"
  ls -la "$mnt"
  df -h "$mnt"
else
  echo "(fs0 is not mounted: cluster up said why above; mount it elsewhere with: appliance fs mount fs0 DIR)"
fi
echo
echo "== appliance object bench data --op write --size 4K --threads 16 --seconds 5 --cleanup"
appliance object bench data --op write --size 4K --threads 16 --seconds 5 --cleanup
echo
echo "The cluster keeps running. Reach it from any command with:"
echo "  export APPLIANCE_CONF_DIR=$cluster/conf      (program: dotnet $program)"
echo "Stop it with:"
echo "  dotnet $program cluster down --data $cluster"
