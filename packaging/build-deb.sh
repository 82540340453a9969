#!/usr/bin/env bash
# Builds packaging/out/appliance_VERSION_amd64.deb: a self-contained single-file publish of node/Cli (no .NET
# runtime needed on the target), the systemd units, the mount helper, bash completion, the manual pages generated
# from --help, and the maintainer scripts. Needs the .NET SDK, dpkg-deb, gzip and man-free tools only (bash, awk,
# sed). Prints the path of the .deb as its last line.
#   --version V       the package's version (default: <Version> of Directory.Build.props)
#   --out DIR         where the .deb goes (default: packaging/out)
#   --publish-dir D   package this publish of `appliance` instead of publishing (D/appliance must exist)
# The publish builds under packaging/out/build (its own bin/obj), so it never disturbs the tree's ordinary builds
# (a single-file publish compiles the libraries with other analyzer properties) and later runs are incremental.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

version= out=$here/out publish=
while (($#)); do
  case $1 in
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --publish-dir) publish=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z $version ]]; then
  version=$(sed -n 's:.*<Version>\([^<]*\)</Version>.*:\1:p' "$root/Directory.Build.props" | head -n1)
  [[ -n $version ]] || { echo "build-deb.sh: no <Version> in Directory.Build.props; pass --version" >&2; exit 1; }
fi
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || { echo "build-deb.sh: '$version' is not a Debian native version" >&2; exit 1; }
for tool in dpkg-deb gzip md5sum; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing (Debian package dpkg / gzip / coreutils)" >&2; exit 1; }
done

# Timestamps of the package's files: the last commit's (reproducible), else now.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}

if [[ -z $publish ]]; then
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
  publish=$here/out/build/publish
  echo "publishing node/Cli (self-contained, single file, linux-x64) to $publish" >&2
  dotnet publish "$root/node/Cli/Appliance.Cli.csproj" -c Release -r linux-x64 --self-contained \
    -p:PublishSingleFile=true --artifacts-path "$here/out/build/artifacts" -o "$publish" -v quiet -nologo >&2
fi
[[ -x $publish/appliance ]] || { echo "build-deb.sh: $publish/appliance is missing or not executable" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/appliance
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/sbin" "$pkg/usr/lib/systemd/system" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/man/man1" "$pkg/usr/share/man/man8" \
  "$pkg/usr/share/doc/appliance"
install -m 0755 "$publish/appliance" "$pkg/usr/bin/appliance"
install -m 0755 "$here/mount.appliance" "$pkg/sbin/mount.appliance"
install -m 0644 "$here"/systemd/*.service "$here"/systemd/*.target "$pkg/usr/lib/systemd/system/"
install -m 0644 "$here/bash-completion/appliance" "$pkg/usr/share/bash-completion/completions/appliance"
install -m 0644 "$here/debian/copyright" "$pkg/usr/share/doc/appliance/copyright"
install -d -m 0755 "$pkg/usr/share/lintian/overrides"
install -m 0644 "$here/debian/lintian-overrides" "$pkg/usr/share/lintian/overrides/appliance"

date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
echo "generating appliance(1) from --help" >&2
"$here/gen-man.sh" "$pkg/usr/bin/appliance" "$version" "$date" | gzip -9n > "$pkg/usr/share/man/man1/appliance.1.gz"
gzip -9n < "$here/debian/mount.appliance.8" > "$pkg/usr/share/man/man8/mount.appliance.8.gz"

# The changelog's newest entry must name this version: a build of another version gets an entry of its own.
changelog=$here/debian/changelog
if [[ $(sed -n '1s/^appliance (\([^)]*\)).*/\1/p' "$changelog") != "$version" ]]; then
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  { printf 'appliance (%s) unstable; urgency=medium\n\n  * Build of commit %s.\n\n -- %s  %s\n\n' "$version" "$commit" \
      "$(sed -n 's/^Maintainer: //p' "$here/debian/control.in")" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
    cat "$changelog"; } | gzip -9n > "$pkg/usr/share/doc/appliance/changelog.gz"
else
  gzip -9n < "$changelog" > "$pkg/usr/share/doc/appliance/changelog.gz"
fi

install -m 0755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$pkg/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$here/debian/control.in" > "$pkg/DEBIAN/control"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb=$out/appliance_${version}_amd64.deb
dpkg-deb --root-owner-group -Zgzip --build "$pkg" "$deb" >&2
echo "$deb"
