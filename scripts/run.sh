#!/usr/bin/env bash
# The README's main command. Today it builds the `appliance` program, makes a file-backed disk under .data/ and
# shows what exists: the program's help, the state of each part and the disk. Later issues grow it into a local
# three-node cluster on file-backed disks with an NBD export and a FUSE mount.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dotnet >/dev/null || { echo "error: dotnet is not on PATH; install the .NET 10 SDK first" >&2; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "== building"
dotnet build -c Release -v quiet -nologo node/Cli/Appliance.Cli.csproj
appliance() { dotnet node/Cli/bin/Release/net10.0/appliance.dll "$@"; }

data=${APPLIANCE_DATA:-.data}
mkdir -p "$data"
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
