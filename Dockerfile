# One image for every Tradewind service and for the Ray head/workers (same Python, same Ray).
# CPU torch by default; GPU image:  docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# The image holds the built wheel, installed, and no source tree: what runs here is what pip users
# get, and `make wheel-check` (.ci/wheel_smoke.sh) runs that same wheel from an empty folder in CI.

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY services ./services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

RUN apt-get update && apt-get install -y --no-install-recommends curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 tradewind

# torch first, from the chosen index, so that the rl extra never pulls another build.
RUN pip install "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"
COPY --from=wheel /dist /dist
RUN pip install "$(ls /dist/tradewind-*.whl)[rl]" && rm -rf /dist

USER tradewind
WORKDIR /home/tradewind
ENV TRADEWIND_VAR_DIR=/home/tradewind/var
ENTRYPOINT ["tini", "--"]
CMD ["tradewind", "--help"]
