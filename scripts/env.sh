# Sourced by the other scripts: installs what the build needs and picks the shared target dir.
# RocksDB is compiled from source by librocksdb-sys and needs clang + libclang (bindgen).
set -euo pipefail

# jemalloc (the node's allocator, tikv-jemalloc-sys) is built from source with make.
if ! command -v clang >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
  || ! command -v make >/dev/null 2>&1; then
  echo "snode: installing clang, libclang-dev and make (needed to build RocksDB and jemalloc)..." >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev make >/dev/null
fi

# One target directory outside the checkout, reused by every build: a fresh RocksDB build takes
# about 15 minutes on 2 cores, so never `cargo clean` it casually.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/snode-target}"
