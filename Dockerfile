# syntax=docker/dockerfile:1
# Dockerfile: edr-worker and edrctl in a slim runtime image.
#
# Stage "build" compiles on Debian bookworm with the -dev packages and runs
# the unit tests; the final stage is bookworm-slim with only the shared
# libraries the two programs load, running as an unprivileged user.
#   docker build -t edr-worker:local .
#   docker run --rm edr-worker:local --help
# CI builds and runs it (scripts/containers.sh up build smoke, from
# scripts/test.d/65-containers.sh) and lints it (60-compose.sh).

FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libyajl-dev libpq-dev libhiredis-dev \
      libmicrohttpd-dev libcunit1-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Unit tests need no server; integration tests need the stack and are
# left to CI. No -DEDR_WERROR here: CI's own builds make warnings errors;
# a user's image build with another compiler version or optimisation
# level (gcc -O2 warns where CI's builds do not) must still succeed.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" \
 && ctest --test-dir /build -L unit --output-on-failure \
 && cmake --install /build --prefix /opt/edr --strip

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 libyajl2 libpq5 libhiredis0.14 libmicrohttpd12 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-log-init \
      --home-dir /var/lib/edr-worker --create-home --shell /usr/sbin/nologin \
      edr
COPY --from=build /opt/edr/bin/edr-worker /opt/edr/bin/edrctl /usr/local/bin/
COPY scripts/http-probe.sh /usr/local/bin/edr-http-probe
# The file store writes edr-store.json to the working directory: the
# user's own home, a volume in production.
WORKDIR /var/lib/edr-worker
# Inside a container the endpoints must be reachable from outside
# (Prometheus, the orchestrator's probes); logs go to a shipper as JSON.
ENV EDR_HTTP_ADDR=0.0.0.0:9464 \
    EDR_LOG_FORMAT=json
USER 10001:10001
EXPOSE 9464
# Liveness only: /readyz is for the orchestrator (see docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["edr-http-probe", "/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["edr-worker"]
