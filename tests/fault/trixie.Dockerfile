# tests/fault's hostile suite inside Debian 13, against the hoteld that
# docker/Dockerfile's `build` stage compiled there: the very binary the
# production image copies, loading trixie's libnng 1.10.1 and protobuf-c
# 1.5.1. tests/fault/trixie.sh (`make fault-test-trixie`) builds that stage
# as $NNGRPC_BUILD_IMAGE (its layers are the production build's, cached:
# one build, several uses), then this image on top of it, and runs it.
#
#   DOCKER_BUILDKIT=0 docker build -f docker/Dockerfile --target build \
#       -t nngrpc/hoteld-build:dev .
#   DOCKER_BUILDKIT=0 docker build -f tests/fault/trixie.Dockerfile \
#       --build-arg BUILD_IMAGE=nngrpc/hoteld-build:dev -t nngrpc/fault-test:dev .
#   docker run --rm nngrpc/fault-test:dev [PYTEST ARGS]

ARG BUILD_IMAGE=nngrpc/hoteld-build:dev
FROM ${BUILD_IMAGE}
# pytest, nngcat (nng-utils, for the tests that speak NNG itself), and
# what `make python` needs to build build/venv (the nngrpc
# package and the generated stubs the tests import).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-pytest python3-venv python3-pip python3-setuptools python3-wheel \
      nng-utils \
 && rm -rf /var/lib/apt/lists/*
COPY clients/python/ clients/python/
RUN make python
COPY tests/ tests/
# The tests start hoteld themselves; nothing here needs root.
RUN useradd --uid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin tester
USER 10001
ENV PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["build/venv/bin/python", "-m", "pytest", "-p", "no:cacheprovider", \
            "--hoteld=build/bin/hoteld"]
CMD ["-q", "-rfEsxXp", "tests/fault/test_hostile.py"]
