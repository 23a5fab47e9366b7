# The smoke client image: Debian's python3 and python3-protobuf, the nngrpc
# wheels installed in a venv as any service installs them, and
# docker/client/smoke_client.py as entry point.
#
#   DOCKER_BUILDKIT=0 docker build -f docker/client.Dockerfile -t nngrpc/smoke-client:dev .
#   docker run --rm nngrpc/smoke-client:dev --help
#   docker run --rm --entrypoint python3 nngrpc/smoke-client:dev \
#       -c 'import nngrpc; from hotel.v1 import hotel_nngrpc'
#
# The wheels are the host's: `make wheel` first (make docker, docker-test,
# swarm-test and upgrade-test do; docker/build.sh client too), which writes
# build/dist/: the nngrpc wheel with its C accelerator (stable ABI,
# cp311-abi3-linux_<arch>: built on Debian 12, it loads under Debian 13's
# Python 3.13 and newer glibc as under 3.11) and the hotel stub wheel.
# .dockerignore lets build/dist/*.whl, and nothing else of build/, in.
#
# docker/compose.yml runs it against the hoteld replicas. Stages:
#   python   debian:$DEBIAN-slim (trixie: Python 3.13; bookworm: 3.11), a
#            venv (--system-site-packages: Debian's python3-protobuf) with
#            both wheels installed by pip, on PATH (and nngrpc._speedups
#            loaded, when the wheel has it); the wheels stay in
#            /opt/nngrpc/wheels
#   pycheck  python plus protoc, mypy-protobuf, mypy, typeshed, pytest,
#            prometheus_client (mypy checks nngrpc.prometheus against it)
#            and gcc with python3-dev (the wheel's C accelerator):
#            `make docker-test` runs tests/integration/test_wheels.py and
#            test_mypy.py in it (the wheels under Python 3.13)
#   client   python plus the smoke client (the last stage: the default)

ARG DEBIAN=trixie

# ---- python ---------------------------------------------------------------
FROM debian:${DEBIAN}-slim AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-protobuf python3-venv \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 nngrpc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin nngrpc
COPY build/dist/*.whl /opt/nngrpc/wheels/
# pip byte-compiles what it installs: the root file system may be read-only
# at run time.
RUN python3 -m venv --system-site-packages /opt/nngrpc/venv \
 && /opt/nngrpc/venv/bin/pip install --no-index --no-cache-dir \
      --disable-pip-version-check /opt/nngrpc/wheels/*.whl \
 && cd / && /opt/nngrpc/venv/bin/python3 -c 'import nngrpc; from hotel.v1 import hotel_nngrpc' \
 && case "$(ls /opt/nngrpc/wheels/nngrpc-*.whl)" in *-abi3-*) \
      /opt/nngrpc/venv/bin/python3 -c 'import nngrpc._speedups' ;; esac
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
