#!/usr/bin/env bash
# The README's test command. On a fresh Debian 12 machine with the .NET 10 SDK it installs the Debian packages the
# tests need (scripts/test-packages.txt; only the missing ones, so running it again is cheap) and runs the whole
# test suite. Tests need root (mounts, loop devices, network namespaces): it re-runs itself with sudo when needed.
#   APPLIANCE_SOAK=1   also run the long soak and fault runs (off by default; the default suite stays short)
#   APPLIANCE_SEED=N   seed for the randomized tests (each prints the seed it used)
#   APPLIANCE_NO_NETNS=1  skip the network-namespace cluster tests (only on a machine that cannot make namespaces)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    exec sudo --preserve-env=APPLIANCE_SOAK,APPLIANCE_SEED,APPLIANCE_NO_NETNS,PATH,DOTNET_ROOT,HOME "$0" "$@"
  fi
  echo "error: the tests need root (mounts, loop devices, network namespaces); run this as root" >&2
  exit 1
fi

missing=()
while read -r pkg; do
  [[ -z $pkg || $pkg == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/test-packages.txt
if ((${#missing[@]})); then
  echo "installing Debian packages the tests need: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v dotnet >/dev/null || { echo "error: dotnet is not on PATH; install the .NET 10 SDK first" >&2; exit 1; }

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# A hung test is dumped and killed instead of eating CI's time budget.
dotnet test Appliance.sln -c Release --blame-hang-timeout 10m 2>&1 | tee "$log" || status=$?
# Daemons run their socket continuations on the runtime's event threads (SocketCompletions in node/Wire): the
# messenger's suite runs a second time that way.
DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 dotnet test tests/Wire.Tests -c Release --no-build --blame-hang-timeout 10m 2>&1 | tee -a "$log" || status=$?

# One closing line for CI: the totals over every test assembly.
awk '/^(Passed|Failed)!/ {
       for (i = 1; i <= NF; i++) {
         if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1)
       }
     }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit $status
