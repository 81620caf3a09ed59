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
# upstream release builds and needs no C toolchain. The -X flags stamp the
# version, as Kubernetes' own build does, so /version reports it (clients
# such as 'weft check --pre' compare it) instead of v0.0.0-master.
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags="$ldflags -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags="$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$tmp" "$bin"
trap - EXIT
echo "$bin"
