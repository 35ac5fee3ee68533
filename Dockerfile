# syntax=docker/dockerfile:1
# Builds both PulseBus binaries into one small, non-root, static image:
#   docker build -t pulsebus .
#   docker run --rm pulsebus --help                          # the relay
#   docker run --rm --entrypoint consumer pulsebus --help    # the consumer
# The builder is pinned to the exact toolchain go.mod names (toolchain line).
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/relay ./cmd/relay \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/consumer ./cmd/consumer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /out/consumer /usr/local/bin/
USER nonroot:nonroot
EXPOSE 9090 9091
ENTRYPOINT ["/usr/local/bin/relay"]
