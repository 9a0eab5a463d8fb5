# lumu in a container: every command, `lumu serve :8000` by default.
#   docker build -t lumu .
#   docker run --rm -p 127.0.0.1:8000:8000 -e LUMU_BOOTSTRAP_SERVERS=HOST:PORT lumu
#   docker run --rm lumu ts parse 1700000000
# compose.yaml runs it beside a Kafka broker. Not built where it was written (no Docker there):
# tests/test_compose.py checks this file statically.
#
# Every compiled dependency (confluent-kafka with librdkafka, numpy, pyroaring, msgspec,
# httptools, uvloop) has a manylinux wheel for CPython 3.11 on x86_64 and aarch64. 3.11 is the
# Python the test suite runs on. The one thing built is lumu's native checker (Rust): in a stage
# of its own, with Debian's cargo, into a wheel; the image takes the wheel, not the toolchain.
FROM python:3.11-slim AS native

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends cargo \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY lumu_cli/native/ lumu_cli/native/
# cargo before 1.68 (Debian 12's) reads crates.io's sparse index only as an unstable feature,
# as the Makefile says; Cargo.lock keeps every crate at a version Rust 1.63 builds.
RUN if cargo version | awk '{ split($2, v, "."); exit !(v[1] == 1 && v[2] < 68) }'; then \
        export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_SPARSE_REGISTRY=true; fi; \
    pip wheel --no-deps --wheel-dir /wheels ./lumu_cli/native

FROM python:3.11-slim

# No pip cache and no pip version check in the image; `pip install .` itself stays as the
# README tells users to install, and the native checker's wheel beside it.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A user of its own, by number, so that a runtime can tell it is not root (runAsNonRoot).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin lumu

WORKDIR /src
# Only what `pip install .` reads (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY lumu_cli/ lumu_cli/
COPY --from=native /wheels/ /wheels/
RUN pip install . \
    && pip install /wheels/*.whl \
    && rm -r /wheels

USER 10001:10001
WORKDIR /

ENTRYPOINT ["lumu"]
CMD ["serve", ":8000"]
EXPOSE 8000

# `lumu serve` answers /healthz 200 while a broker answers, 503 while none does; urlopen
# raises on a 503 or a refused connection, so python exits 1: unhealthy. (slim has no curl.)
# It asks port 8000: a container serving another port, or running another command, should
# turn it off (`--no-healthcheck`, or `healthcheck: disable: true` in compose).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
