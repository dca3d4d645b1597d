# offerbandit: the decision service in a container (docs/operations.md, "Container").
#
#   docker build -t offerbandit .
#   docker run -p 50051:50051 -v offerbandit-data:/var/lib/offerbandit/data \
#     -v /etc/offerbandit:/etc/offerbandit:ro \
#     -e OFFERBANDIT_TLS_CERT_FILE=/etc/offerbandit/server.crt \
#     -e OFFERBANDIT_TLS_KEY_FILE=/etc/offerbandit/server.key \
#     -e OFFERBANDIT_TOKENS_FILE=/etc/offerbandit/tokens.toml \
#     -e OFFERBANDIT_HEALTH_CA_FILE=/etc/offerbandit/ca.crt \
#     -e OFFERBANDIT_HEALTH_SERVER_NAME=decisions.example.com \
#     offerbandit
#
# The server listens on 0.0.0.0 in the container, so it refuses to start without TLS and
# tokens unless OFFERBANDIT_ALLOW_INSECURE=true says something in front does both.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the service and its pinned dependencies in a venv --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY bandit bandit
COPY server server
COPY offline_eval offline_eval
COPY offerbandit offerbandit
# serving only (no MLflow: `serve --model models:/…` needs the image built with
# --build-arg EXTRAS='[offline]')
ARG EXTRAS=""
RUN python -m venv /opt/offerbandit \
 && /opt/offerbandit/bin/pip install -c constraints.txt pip \
 && /opt/offerbandit/bin/pip install -c constraints.txt ".${EXTRAS}" \
 && /opt/offerbandit/bin/offerbandit health --help > /dev/null

# ---- run: the venv alone, as a user without privileges ----------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 offerbandit \
 && useradd --system --uid 10001 --gid offerbandit --home-dir /var/lib/offerbandit \
      --create-home --shell /usr/sbin/nologin offerbandit \
 && mkdir -p /var/lib/offerbandit/data \
 && chown -R offerbandit:offerbandit /var/lib/offerbandit
COPY --from=build /opt/offerbandit /opt/offerbandit
ENV PATH=/opt/offerbandit/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OFFERBANDIT_HOST=0.0.0.0 \
    OFFERBANDIT_PORT=50051 \
    OFFERBANDIT_DATA_DIR=/var/lib/offerbandit/data \
    OFFERBANDIT_LOG_FORMAT=json \
    OFFERBANDIT_HEALTH_ADDRESS=127.0.0.1:50051
USER offerbandit:offerbandit
WORKDIR /var/lib/offerbandit
VOLUME ["/var/lib/offerbandit/data"]
EXPOSE 50051
# the gRPC health service: SERVING once the model is loaded and while the log can be written
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["offerbandit", "health", "--timeout", "4"]
# SIGTERM drains in-flight calls, flushes the log and saves the model
STOPSIGNAL SIGTERM
CMD ["offerbandit", "serve"]
