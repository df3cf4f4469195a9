# One image for every service: `hms-daemon serve <service>` picks which one a container runs.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p hms-daemon -p hms-cli \
 && cp target/release/hms-daemon target/release/hmsctl /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/hms hms \
 && mkdir -p /var/lib/hms && chown hms /var/lib/hms
COPY --from=build /usr/local/bin/hms-daemon /usr/local/bin/hmsctl /usr/local/bin/
USER hms
WORKDIR /var/lib/hms
ENV HMS_BIND=0.0.0.0 HMS_DATA_DIR=/var/lib/hms HMS_LOG_FORMAT=json
EXPOSE 8001-8007
ENTRYPOINT ["hms-daemon"]
CMD ["serve", "--all"]
