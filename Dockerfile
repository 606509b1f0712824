# escqrs: one image holding every escqrs program: escqrs-gateway,
# escqrs-command-service, escqrs-projector and the escqrs CLI, with libescqrs.so
# and the shipped domain modules (cart, account) in /usr/local/lib/escqrs/modules,
# where the programs look by default (key modules.dir).  A team's module is one
# more file there (or a mounted directory and modules.dir).
#   docker build -t escqrs:dev .
# Build stage: Debian 12 with the -dev packages, and librdkafka built from Debian 12's
# source with its prefetch pause, busy-wait and 1 ms transaction wait fixed by
# scripts/build-librdkafka (pinned,
# checksummed; docs/architecture.md, "librdkafka"); runtime stage: only the shared
# libraries the programs link (that librdkafka travels in /usr/local/lib), running as
# an unprivileged user.
# Checked without a Docker engine by scripts/check-dockerfile (see docs/operations.md).

FROM debian:12.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      dpkg-dev python3 libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev \
      libavro-dev librocksdb-dev libjemalloc-dev \
      libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev \
      libjwt-dev libssl-dev libgnutls28-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/build-librdkafka scripts/build-librdkafka
RUN scripts/build-librdkafka \
 && rm -rf /var/lib/apt/lists/* .local/cache
COPY CMakeLists.txt ./
COPY common common
COPY producers producers
COPY consumers consumers
COPY cli cli
COPY schemas schemas
COPY examples examples
# cmake --install: bin/ (programs, RPATH $ORIGIN/../lib), lib/libescqrs.so*,
# lib/escqrs/modules/; the SDK headers and CMake package are dropped (no
# compiler in the runtime image).
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DESCQRS_WERROR=ON \
          -DESCQRS_TESTS=OFF -DESCQRS_BENCH=OFF -DESCQRS_RDKAFKA_PREFIX="$(scripts/build-librdkafka)" \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build --prefix /out \
 && cp -a "$(scripts/build-librdkafka)"/lib/librdkafka.so.1 /out/lib/ \
 && rm -rf /out/include /out/lib/cmake /out/lib/pkgconfig \
 && test -x /out/bin/escqrs-gateway && test -f /out/lib/escqrs/modules/escqrs-cart.so

FROM debian:12.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libsasl2-2 libzstd1 liblz4-1 zlib1g \
      libavro23 librocksdb7.8 libjemalloc2 libmicrohttpd12 libjansson4 libcurl4 \
      libjwt0 libssl3 libgnutls30 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 escqrs \
 && useradd --system --uid 10001 --gid escqrs --home-dir /var/lib/escqrs --shell /usr/sbin/nologin escqrs \
 && mkdir -p /var/lib/escqrs \
 && chown escqrs:escqrs /var/lib/escqrs
COPY --from=build /out/ /usr/local/
USER 10001:10001
WORKDIR /var/lib/escqrs
# RocksDB views live here; mount a volume (a PVC per projector replica on Kubernetes).
VOLUME ["/var/lib/escqrs"]
ENV ESCQRS_STORE_PATH=/var/lib/escqrs
EXPOSE 8070 8080 8090 8091
# In a container each program must listen on every interface, not loopback; each
# has its own port, so it is set per program (Kubernetes sets ESCQRS_HTTP_LISTEN
# per container).  The projector by default; another program, for example:
#   docker run escqrs:dev escqrs-gateway --set http.listen=0.0.0.0:8080
CMD ["escqrs-projector", "--set", "http.listen=0.0.0.0:8090"]
