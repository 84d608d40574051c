#!/usr/bin/env bash
# Proves the workspace builds with cargo alone: regenerates baton-terraform's gRPC code (and
# tf-provider's) inside a private mount namespace where every system `protoc` and the protobuf
# headers (/usr/include/google) are hidden. Needs root (unshare --mount).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}

if [ "${1:-}" != --inside ]; then
  # Force both build scripts to run again, then build inside the namespace.
  "$cargo" clean -q -p tf-provider -p baton-terraform
  exec unshare --mount --propagation private "$0" --inside
fi

# Inside the namespace: hide every protoc on PATH (behind /dev/null, which is not executable)
# and the system's protobuf headers (behind an empty tmpfs).
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}" /usr/bin /usr/local/bin; do
  if [ -e "$d/protoc" ]; then mount --bind /dev/null "$d/protoc"; fi
done
for inc in /usr/include/google /usr/local/include/google; do
  if [ -d "$inc" ]; then mount -t tmpfs -o ro,size=4k none "$inc"; fi
done
unset PROTOC PROTOC_INCLUDE
for d in "${dirs[@]}"; do
  if [ -f "$d/protoc" ] && [ -x "$d/protoc" ]; then
    echo "build-without-protoc: could not hide $d/protoc" >&2
    exit 1
  fi
done
if [ -e /usr/include/google/protobuf/empty.proto ]; then
  echo "build-without-protoc: could not hide /usr/include/google" >&2
  exit 1
fi
log=$(mktemp)
if ! "$cargo" build -p baton-terraform --bin terraform-provider-baton 2>&1 | tee "$log"; then
  echo "build-without-protoc: FAILED: baton-terraform does not build without a system protoc" >&2
  exit 1
fi
for crate in tf-provider baton-terraform; do
  grep -q "Compiling $crate " "$log" || { echo "build-without-protoc: $crate was not rebuilt" >&2; exit 1; }
done
rm -f "$log"
echo "build-without-protoc: baton-terraform and tf-provider generated their gRPC code with no system protoc and no /usr/include/google"
