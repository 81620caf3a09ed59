# The one weft binary in a distroless image: control plane, proxy,
# proxy-init, ingress and rate limit service all run from it.
#
#   docker build -t ghcr.io/weft-mesh/weft:v1.2.3 --build-arg VERSION=v1.2.3 .
#
# 'weft install --image' selects the image the manifests use.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/weft-mesh/weft/internal/cli.Version=${VERSION}" \
      -o /out/weft ./cmd/weft

# The injected init container: 'weft proxy-init' needs iptables-restore,
# which distroless lacks. Build with --target proxy-init and tag it as the
# main image's repository plus -proxy-init (what 'weft install' expects):
#   docker build --target proxy-init -t ghcr.io/weft-mesh/weft-proxy-init:v1.2.3 .
FROM debian:12-slim AS proxy-init
RUN apt-get update && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/weft /usr/local/bin/weft
ENTRYPOINT ["/usr/local/bin/weft"]

# The default target. static: no libc needed (CGO_ENABLED=0); nonroot is
# UID 65532, the UID the install manifests run the control plane as.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/weft /usr/local/bin/weft
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weft"]
