#!/usr/bin/env bash
# The cluster steps inside one VM, run as root by the Vagrantfile (uploaded as /tmp/appliance-provision.sh). Each
# step checks first, so running it again changes nothing:
#   install DEB              install the package (apt resolves its dependencies)
#   bootstrap MON_IP CIDR    `appliance bootstrap` unless this node is in a cluster already
#   is-member                prints yes when this node has a cluster configuration
#   join-token NAME          prints a join token for node NAME (on a member)
#   join TOKEN               `appliance join TOKEN` unless this node is a member
#   disks SIZE_GB            `appliance disk add` for every whole disk of SIZE_GB GiB with nothing on it
#   pools                    pool `vm`, image `vm/disk0` (4 GiB) and filesystem `shared`, then the cluster's state
set -euo pipefail
conf=/etc/appliance/cluster.conf

case ${1:-} in
  install)
    want=$(dpkg-deb -f "$2" Version)
    have=$(dpkg-query -W -f='${Version}' appliance 2>/dev/null || true)
    if [[ $have != "$want" ]]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q
      apt-get install -y -q "$2"
    fi
    appliance --version ;;
  bootstrap)
    [[ -f $conf ]] || appliance bootstrap --mon-ip "$2" --public-network "$3" ;;
  is-member)
    [[ -f $conf ]] && echo yes || echo no ;;
  join-token)
    appliance join-token "$2" | tail -n 1 ;;
  join)
    [[ -f $conf ]] || appliance join "$2" ;;
  disks)
    size=$(($2 * 1024 * 1024 * 1024))
    in_use=$(appliance disk ls 2>/dev/null || true)
    while read -r dev type bytes; do
      [[ $type == disk && $bytes == "$size" ]] || continue
      [[ $(lsblk -nro NAME "$dev" | wc -l) == 1 ]] || continue   # partitions: not ours to take
      grep -qF "$dev" <<<"$in_use" && continue
      appliance disk add "$dev"
    done < <(lsblk -dnbpo NAME,TYPE,SIZE) ;;
  pools)
    appliance pool ls | grep -w vm >/dev/null || appliance pool create vm --size 3
    appliance image ls vm | grep -w disk0 >/dev/null || appliance image create vm/disk0 --size 4G
    appliance fs ls | awk '$1 == "shared" { found = 1 } END { exit !found }' || appliance fs create shared
    appliance status
    appliance disk ls
    appliance image ls vm
    appliance fs ls ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2 ;;
esac
