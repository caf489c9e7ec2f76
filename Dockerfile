# Build: cgo is needed for pg_query (the real Postgres parser).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -o /out/tombstone ./cmd/tombstone

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 tombstone
COPY --from=build /out/tombstone /usr/local/bin/tombstone
COPY configs/tombstone.yaml /etc/tombstone/tombstone.yaml
USER tombstone
EXPOSE 6432 9187
ENTRYPOINT ["tombstone"]
CMD ["proxy", "--config", "/etc/tombstone/tombstone.yaml"]
