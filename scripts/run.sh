#!/usr/bin/env bash
# The README's main command. Today it builds the `appliance` program, makes a file-backed disk and a thin image
# under .data/, serves the image over NBD for a moment and shows what exists: the program's help, the state of each
# part, the disk and the export. Later issues grow it into a local three-node cluster on file-backed disks with an
# NBD export and a FUSE mount.
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
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$sock"' EXIT
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
if command -v nbdinfo >/dev/null; then
  nbdinfo "nbd+unix:///demo/vm1?socket=$sock"
else
  echo "(install libnbd-bin to look at the export with nbdinfo; qemu, nbdcopy and fio's nbd engine work as well)"
fi
echo
echo "The export stops with this script; keep one running with:"
echo "  dotnet node/Cli/bin/Release/net10.0/appliance.dll nbd serve --local $data/images --unix $sock"
