#!/bin/sh
# Builds, signs and lays out a local stand-in for NVIDIA's container toolkit apt repository
# (NVIDIA's is unreachable from the test machine). Layout as NVIDIA's flat repository:
#   <root>/gpgkey                         ASCII-armoured public key
#   <root>/stable/deb/<arch>/{Packages,Release,InRelease,Release.gpg,*.deb}
# The package is a dummy nvidia-container-toolkit whose nvidia-container-runtime hands
# everything to runc, so dockerd can really use it as a runtime.
set -eu
root=${1:?mirror root}
version=${2:?package version}
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"

pkg="$work/nvidia-container-toolkit"
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: nvidia-container-toolkit
Version: $version
Architecture: $arch
Maintainer: molecule <molecule@localhost>
Description: test stand-in for NVIDIA's container toolkit (runtime hands off to runc)
CONTROL
printf '#!/bin/sh\nexec runc "$@"\n' > "$pkg/usr/bin/nvidia-container-runtime"
chmod 0755 "$pkg/usr/bin/nvidia-container-runtime"
# nvidia-ctk stand-in: `cdi generate --output=FILE` writes a spec numbered by a generation counter,
# so verify.yml can tell whether the role generated it again.
cat > "$pkg/usr/bin/nvidia-ctk" <<'CTK'
#!/bin/sh
out=
for arg in "$@"; do case "$arg" in --output=*) out=${arg#--output=} ;; esac; done
if [ "$1 $2" != "cdi generate" ] || [ -z "$out" ]; then
  echo "nvidia-ctk stand-in: only 'cdi generate --output=FILE'" >&2; exit 2
fi
count=/var/lib/nvidia-ctk-standin.count
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count"
printf 'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n# generation %s\n' "$n" > "$out"
CTK
chmod 0755 "$pkg/usr/bin/nvidia-ctk"

repo="$root/stable/deb/$arch"
mkdir -p "$repo"
dpkg-deb --root-owner-group --build "$pkg" "$repo/nvidia-container-toolkit_${version}_${arch}.deb" >/dev/null

gpg --batch --quiet --passphrase '' --quick-gen-key 'openautoglm molecule mirror <molecule@localhost>' rsa3072 sign never
gpg --batch --armor --export > "$root/gpgkey"

cd "$repo"
apt-ftparchive packages . > Packages
apt-ftparchive -o APT::FTPArchive::Release::Origin=molecule-mirror release . > Release
gpg --batch --yes --clearsign -o InRelease Release
gpg --batch --yes --armor --detach-sign -o Release.gpg Release
rm -rf "$work"
