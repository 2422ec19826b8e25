#!/usr/bin/env bash
# Builds a static fio (Debian 12's source, 3.33) for hosts without fio and without internet,
# such as the device tool's Ubuntu 24.04 H100 VM. Debian's fio .deb cannot simply be
# carried: it links librbd/librados (Ceph), libgfapi (Gluster), libnbd, libpmem, rdma and
# libaio.so.1 (Ubuntu 24.04 renamed it libaio.so.1t64). This build needs only the kernel:
# libaio is linked statically (from Debian's libaio-dev, unpacked, not installed), io_uring
# is fio's own; the network/ceph/gluster/rdma engines are left out.
#   bash tests/device/build-fio.sh [outdir]     -> <outdir>/fio (default build/device)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$repo/build/device}
version=3.33
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
curl -sSfO "http://deb.debian.org/debian/pool/main/f/fio/fio_${version}.orig.tar.gz"
apt-get download libaio-dev libaio1 >/dev/null 2>&1 || { echo "apt-get download libaio-dev failed" >&2; exit 1; }
for deb in libaio*.deb; do dpkg -x "$deb" aio; done
tar -xzf "fio_${version}.orig.tar.gz"
cd "fio-${version}"
export CFLAGS="-I$work/aio/usr/include -O2" LDFLAGS="-L$work/aio/usr/lib/x86_64-linux-gnu"
./configure --build-static --disable-native --disable-rdma --disable-rados --disable-rbd --disable-http \
  --disable-gfapi --disable-pmem --disable-numa --disable-xnvme --disable-libzbc \
  --disable-dfs --disable-tcmalloc --disable-libnfs >configure.log 2>&1 \
  || { tail -20 configure.log >&2; exit 1; }
grep -E "^(Linux AIO support|io_uring|Static build)" configure.log || true
make -j"$(nproc)" fio >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
mkdir -p "$out"
strip -o "$out/fio" fio
"$out/fio" --version
file "$out/fio" 2>/dev/null || true
ls -la "$out/fio"
