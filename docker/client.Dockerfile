# A small Python client image: Debian's python3 and python3-protobuf, the
# nngrpc package (clients/python, with its generated modules) and the
# generated hotel stubs, and docker/client/smoke_client.py as entry point.
#
#   DOCKER_BUILDKIT=0 docker build -f docker/client.Dockerfile -t nngrpc/smoke-client:dev .
#
# docker/compose.yml runs it against the hoteld replicas. The package is
# built by the project's own rules (clients/python/python.mk, `make python`)
# in the first stage, so the image has exactly what build/venv has.

# ---- build the nngrpc package and stubs -----------------------------------
FROM debian:bookworm-slim AS pybuild
# The same first line as docker/Dockerfile's build stage: one cached layer.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      make gcc libc6-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler \
      protobuf-compiler libjansson-dev python3 python3-protobuf \
 && rm -rf /var/lib/apt/lists/*
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-venv python3-pip python3-setuptools python3-wheel \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY proto/ proto/
COPY src/ src/
COPY clients/python/ clients/python/
# The installed package and the generated user stubs, gathered into one
# directory for PYTHONPATH.
RUN make python \
 && mkdir -p /out/python \
 && cp -R build/venv/lib/python3*/site-packages/nngrpc /out/python/ \
 && cp -R build/gen/python/. /out/python/ \
 && find /out/python -name __pycache__ -prune -exec rm -rf {} +

# ---- client ---------------------------------------------------------------
FROM debian:bookworm-slim AS client
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-protobuf \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 nngrpc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin nngrpc
COPY --from=pybuild /out/python/ /opt/nngrpc/python/
COPY docker/client/smoke_client.py /opt/nngrpc/smoke_client.py
# Byte-compile now: the root file system may be read-only at run time.
RUN python3 -m compileall -q /opt/nngrpc \
 && python3 -c 'import sys; sys.path.insert(0, "/opt/nngrpc/python"); import nngrpc, hotel.v1.hotel_nngrpc'
ENV PYTHONPATH=/opt/nngrpc/python \
    PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["python3", "/opt/nngrpc/smoke_client.py"]
