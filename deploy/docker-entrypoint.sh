#!/bin/sh
# Entry point of the snode image: on the first `run` in an empty data volume, create the
# node's keys (`snode init` prints its pubkeys to the log once), then hand over to snode.
# Any other command (`status`, `keys show`, `directory`, ...) goes straight to snode.
set -eu
data_dir="${SNODE_DATA_DIR:-/var/lib/snode}"
if [ "${1:-}" = "run" ] && [ ! -f "$data_dir/key_ed25519" ]; then
  snode init --data-dir "$data_dir"
fi
exec snode "$@"
