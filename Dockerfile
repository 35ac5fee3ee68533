# syntax=docker/dockerfile:1
# Builds both PulseBus binaries into one small, non-root, static image:
#   docker build --build-arg VCS_REVISION=$(git rev-parse HEAD) -t pulsebus .
#   docker run --rm pulsebus --help                          # the relay
#   docker run --rm --entrypoint consumer pulsebus --help    # the consumer
# The builder is pinned to the exact toolchain go.mod names (toolchain line).
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# BuildKit cache mounts keep the module and build caches across builds.
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The revision the start-up log shows: .dockerignore leaves .git out, so the
# go command cannot read it; make up passes it.
ARG VCS_REVISION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    ldflags="-s -w -X github.com/edupulse/pulsebus/internal/cli.Revision=${VCS_REVISION}" \
 && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o /out/relay ./cmd/relay \
 && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o /out/consumer ./cmd/consumer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /out/consumer /usr/local/bin/
USER nonroot:nonroot
EXPOSE 9090 9091
ENTRYPOINT ["/usr/local/bin/relay"]
