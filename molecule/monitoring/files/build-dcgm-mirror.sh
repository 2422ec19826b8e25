#!/bin/sh
# Builds, signs and lays out a local stand-in for NVIDIA's CUDA apt repository with DCGM
# (NVIDIA's is unreachable from the test machine), in its flat layout:
#   <root>/<arch-dir>/{3bf863cc.pub,Packages,Release,InRelease,Release.gpg,*.deb}
# datacenter-gpu-manager: a dummy nvidia-dcgm.service (no GPU here, nothing to manage).
# dcgm-exporter (what an internal mirror would serve; NVIDIA packages none): a small HTTP
# server answering /metrics with one DCGM_FI_DEV_GPU_TEMP sample, so the role's unit,
# port and scrape check run for real.
set -eu
repo=${1:?repository directory}
version=${2:?package version}
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
mkdir -p "$repo"

pkg="$work/dcgm"
mkdir -p "$pkg/DEBIAN" "$pkg/lib/systemd/system" "$pkg/usr/bin"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: datacenter-gpu-manager
Version: $version
Architecture: $arch
Maintainer: molecule <molecule@localhost>
Description: test stand-in for NVIDIA DCGM (host engine does nothing)
CONTROL
printf '#!/bin/sh\nexec sleep infinity\n' > "$pkg/usr/bin/nv-hostengine"
chmod 0755 "$pkg/usr/bin/nv-hostengine"
cat > "$pkg/lib/systemd/system/nvidia-dcgm.service" <<'UNIT'
[Unit]
Description=stand-in DCGM host engine
[Service]
ExecStart=/usr/bin/nv-hostengine
[Install]
WantedBy=multi-user.target
UNIT
dpkg-deb --root-owner-group --build "$pkg" "$repo/datacenter-gpu-manager_${version}_${arch}.deb" >/dev/null

pkg="$work/exporter"
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: dcgm-exporter
Version: $version
Architecture: $arch
Depends: python3
Maintainer: molecule <molecule@localhost>
Description: test stand-in for dcgm-exporter (serves one DCGM field)
CONTROL
cat > "$pkg/usr/bin/dcgm-exporter" <<'PY'
#!/usr/bin/python3
import argparse
from http.server import BaseHTTPRequestHandler, HTTPServer
p = argparse.ArgumentParser()
p.add_argument('--address', default=':9400')
p.add_argument('--remote-hostengine-info', default='localhost:5555')
a, _ = p.parse_known_args()
BODY = b'# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-stand-in"} 40\n'
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('Content-Type', 'text/plain; version=0.0.4'); self.end_headers()
        self.wfile.write(BODY)
host, _, port = a.address.rpartition(':')
HTTPServer((host or '0.0.0.0', int(port)), H).serve_forever()
PY
chmod 0755 "$pkg/usr/bin/dcgm-exporter"
dpkg-deb --root-owner-group --build "$pkg" "$repo/dcgm-exporter_${version}_${arch}.deb" >/dev/null

gpg --batch --quiet --passphrase '' --quick-gen-key 'openautoglm molecule CUDA mirror <molecule@localhost>' rsa3072 sign never
gpg --batch --armor --export > "$repo/3bf863cc.pub"
cd "$repo"
apt-ftparchive packages . > Packages
apt-ftparchive -o APT::FTPArchive::Release::Origin=molecule-cuda-mirror release . > Release
gpg --batch --yes --clearsign -o InRelease Release
gpg --batch --yes --armor --detach-sign -o Release.gpg Release
rm -rf "$work"
