# graphops worker image: a static Go binary on distroless, non-root, no shell.
#
#   docker build --build-arg VERSION=v1.2.3 -t <registry>/graphops-worker:v1.2.3 .
#   az acr build -r <registry> -t graphops-worker:v1.2.3 --build-arg VERSION=v1.2.3 .
#
# Plain Dockerfile syntax (no BuildKit cache mounts), so that any builder
# takes it, ACR Tasks included.
# This file is the reference build (there is no .ko.yaml). The Helm chart
# assumes what the last stage sets: user 65532, entrypoint /worker (the chart
# passes only `run` as args), admin port 9464, a read-only root filesystem.
# .ci/deploy-check runs the exact `go build` line below and checks those
# facts against the chart, since no Docker engine runs in CI.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/worker ./cmd/worker

# static-debian12: CA certificates and tzdata, no libc, no shell, no package
# manager. Pin it by digest in your own build (…:nonroot@sha256:…) to make
# the image reproducible.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /worker
# nonroot is 65532:65532 in distroless; said again so that runAsNonRoot can
# check a numeric user.
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/worker"]
CMD ["run"]
