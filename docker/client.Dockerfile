# The smoke client image: Debian's python3 and python3-protobuf, the nngrpc
# wheels installed in a venv as any service installs them, and
# docker/client/smoke_client.py as entry point.
#
#   DOCKER_BUILDKIT=0 docker build -f docker/client.Dockerfile -t nngrpc/smoke-client:dev .
#   docker run --rm nngrpc/smoke-client:dev --help
#   docker run --rm --entrypoint python3 nngrpc/smoke-client:dev \
#       -c 'import nngrpc; from hotel.v1 import hotel_nngrpc'
#
# docker/compose.yml runs it against the hoteld replicas. Stages:
#   wheels   `make wheel`: the nngrpc wheel and the hotel stub wheel
#   python   debian:$DEBIAN-slim (trixie: Python 3.13; bookworm: 3.11), a
#            venv (--system-site-packages: Debian's python3-protobuf) with
#            both wheels installed by pip, on PATH; the wheels stay in
#            /opt/nngrpc/wheels
#   pycheck  python plus protoc, mypy-protobuf, mypy, typeshed, pytest,
#            prometheus_client (mypy checks nngrpc.prometheus against it)
#            and gcc with python3-dev (the wheel's C accelerator):
#            `make docker-test` runs tests/integration/test_wheels.py and
#            test_mypy.py in it (the wheels under Python 3.13)
#   client   python plus the smoke client (the last stage: the default)

ARG DEBIAN=trixie

# ---- wheels ---------------------------------------------------------------
FROM debian:trixie-slim AS wheels
# The same first line as docker/Dockerfile's build stage: one cached layer.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      make gcc libc6-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler libseccomp-dev \
      protobuf-compiler libjansson-dev python3 python3-protobuf zlib1g-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-venv python3-pip mypy-protobuf \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# What `make wheel` reads (the Makefile includes fragments from src/; the
# status table is include/nngrpc/status_table.h): a change to the tests or
# the docs does not rebuild the wheels.
COPY Makefile ./
COPY proto/ proto/
COPY include/ include/
COPY src/ src/
COPY clients/python/ clients/python/
RUN make wheel && ls -l build/dist

# ---- python ---------------------------------------------------------------
FROM debian:${DEBIAN}-slim AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-protobuf python3-venv \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 nngrpc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin nngrpc
COPY --from=wheels /src/build/dist/ /opt/nngrpc/wheels/
# pip byte-compiles what it installs: the root file system may be read-only
# at run time.
RUN python3 -m venv --system-site-packages /opt/nngrpc/venv \
 && /opt/nngrpc/venv/bin/pip install --no-index --no-cache-dir \
      --disable-pip-version-check /opt/nngrpc/wheels/*.whl \
 && cd / && /opt/nngrpc/venv/bin/python3 -c 'import nngrpc; from hotel.v1 import hotel_nngrpc'
ENV PATH=/opt/nngrpc/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

# ---- pycheck --------------------------------------------------------------
FROM python AS pycheck
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      protobuf-compiler mypy-protobuf python3-mypy python3-typeshed python3-pytest \
      python3-pip python3-prometheus-client gcc libc6-dev python3-dev \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

# ---- client ---------------------------------------------------------------
FROM python AS client
COPY docker/client/smoke_client.py /opt/nngrpc/smoke_client.py
RUN python3 -m compileall -q /opt/nngrpc/smoke_client.py
USER 10001:10001
ENTRYPOINT ["python3", "/opt/nngrpc/smoke_client.py"]
