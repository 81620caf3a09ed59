#!/bin/sh
# build.sh builds the kube-apiserver that internal/kubetest runs, once, into
# a cache outside the repository, and prints its path. It does nothing when
# the binary is already there. Building takes about ten minutes on two cores;
# CI calls this before `go test ./...` and keeps the cache between runs.
#
#   WEFT_KUBE_CACHE  where binaries are cached
#                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/weft)
#
# The version is the k8s.io/kubernetes requirement in go.mod next to this
# script; internal/kubetest reads the same go.mod to find the binary.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$here/go.mod")
if [ -z "$version" ]; then
	echo "build.sh: no k8s.io/kubernetes requirement in $here/go.mod" >&2
	exit 1
fi
cache=${WEFT_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}
bin="$cache/kube-apiserver-$version"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
echo "build.sh: building kube-apiserver $version into $bin (takes several minutes)" >&2
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cd "$here"
# -trimpath and no debug info keep the binary small; CGO off matches the
# upstream release builds and needs no C toolchain.
CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags='-s -w' -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$tmp" "$bin"
trap - EXIT
echo "$bin"
