#!/usr/bin/env bash
# Writes appliance(1) in roff to standard output, generated from the program's own --help: the root's, then every
# subcommand's, depth first in the order --help lists them (so the page is as true as the help is).
#   gen-man.sh PROGRAM VERSION DATE
set -euo pipefail
prog=$1 version=$2 date=$3

# roff-safe text: backslashes escaped, a leading . or ' neutralised, hyphens of options kept as minus signs.
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" -e 's/-/\\-/g'; }

# The subcommand names of one --help output (the first word of each line of its Commands: section).
subcommands() { awk '/^Commands:/ { on = 1; next } /^[^ ]/ { on = 0 } on && /^  [^ ]/ { print $1 }'; }

# One help page as a subsection: its description filled, the rest (usage, arguments, options, commands) as is.
section() {
  local path=$1 help=$2
  printf '.SS "%s"\n' "$(printf '%s' "$path" | esc)"
  awk '/^Description:/ { mode = "d"; next }
       /^[A-Z][A-Za-z ]*:$/ { if (mode == "d") print ".PP"; if (mode != "n") print ".nf"; mode = "n"; print; next }
       mode == "d" { sub(/^  /, ""); if (length($0)) print; next }
       mode == "n" { print }
       END { if (mode == "n") print ".fi" }' <<<"$help" | sed -e 's/\\/\\e/g' -e "s/^\\([']\\)/\\\\\\&\\1/" -e '/^\.\(PP\|nf\|fi\)$/!{s/^\./\\\&./;s/-/\\-/g}'
}

# Every page is fetched first, one level of the tree at a time with 4 in flight (each is a process start), into
# files named by the command path; then they are written depth first.
pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
page() { local k=${1// /_}; echo "$pages/h_${k:-root}"; }
"$prog" --help > "$(page "")"
mapfile -t level < <(subcommands < "$(page "")")
while ((${#level[@]})); do
  printf '%s\n' "${level[@]}" | xargs -d '\n' -P 4 -I{} bash -c 'k=${2// /_}; "$1" $2 --help > "$3/h_$k"' _ "$prog" {} "$pages"
  next=()
  for path in "${level[@]}"; do
    for sub in $(subcommands < "$(page "$path")"); do next+=("$path $sub"); done
  done
  level=("${next[@]}")
done

walk() {
  local path=$1 sub
  section "appliance${path:+ $path}" "$(cat "$(page "$path")")"
  for sub in $(subcommands < "$(page "$path")"); do
    walk "${path:+$path }$sub"
  done
}

root=$(cat "$(page "")")
summary=$(awk '/^Description:/ { getline; sub(/^  /, ""); print; exit }' <<<"$root")
exit_codes=$(awk '/^  Exit codes:/ { sub(/^  Exit codes: /, ""); print; exit }' <<<"$root")

cat <<HEAD
.TH APPLIANCE 1 "$date" "appliance $version" "User Commands"
.SH NAME
appliance \\- storage node: object store on raw disks, Paxos monitors, CRUSH, NBD and FUSE
.SH SYNOPSIS
.B appliance
.I command
.RI [ subcommand ...]
.RI [ options ]
.br
.B appliance \\-\\-version
.SH DESCRIPTION
$(esc <<<"$summary")
.PP
Every command and subcommand prints its usage with
.BR \\-\\-help .
The commands that run a daemon in the foreground
.RB ( "mon run" ,
.BR "osd run" ,
.BR "nbd serve" ,
.BR "fs mount \\-\\-foreground" )
are what the systemd units of the package start.
.SH COMMANDS
HEAD
walk ""
cat <<TAIL
.SH EXIT STATUS
$(esc <<<"$exit_codes")
.SH FILES
.TP
.I /etc/appliance
The cluster's configuration: cluster.conf and the keyrings (readable by root only); \\-\\-conf\\-dir or
APPLIANCE_CONF_DIR name another.
.TP
.I /var/lib/appliance
Monitor stores (mon/NAME) and OSD disks (osd/ID/block: a block device, a file, or a symlink to one).
.TP
.I /usr/lib/systemd/system/appliance.target
Groups the units appliance\\-mon@NAME, appliance\\-osd@ID, appliance\\-nbd and appliance\\-fs@NAME.
.SH ENVIRONMENT
.TP
.B APPLIANCE_CONF_DIR
The configuration directory when \\-\\-conf\\-dir is not given.
.SH SEE ALSO
.BR mount.appliance (8),
.BR systemctl (1)
TAIL
