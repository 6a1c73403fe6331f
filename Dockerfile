# onenet-dispatch in a container: the package and its postgres extra, installed from
# this checkout, run as an unprivileged user. docs/scale-out.md shows it in Kubernetes.
#
#   docker build -t onenet-dispatch:0.1.0 .
#   docker run --rm -e ONENET_API_KEY onenet-dispatch:0.1.0 validate /jobs/zone-a.yaml
#
# Checked with hadolint in tests/test_container.py.

# Build stage: pip and the build backend stay out of the image that runs.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
# A virtual environment in its own prefix, copied whole into the runtime stage.
RUN python -m venv /opt/onenet-dispatch \
    && /opt/onenet-dispatch/bin/pip install --no-cache-dir --no-compile '.[postgres]'

FROM python:3.12-slim
# A fixed, unprivileged uid/gid: Kubernetes' runAsNonRoot checks a numeric user, and a
# volume's fsGroup can be set to match. -l: no huge sparse lastlog for a high uid.
RUN groupadd --system --gid 10001 onenet-dispatch \
    && useradd --system -l --uid 10001 --gid 10001 --home-dir /var/lib/onenet-dispatch \
        --shell /usr/sbin/nologin onenet-dispatch \
    && install -d -o onenet-dispatch -g onenet-dispatch -m 0750 /var/lib/onenet-dispatch
COPY --from=build /opt/onenet-dispatch /opt/onenet-dispatch
ENV PATH=/opt/onenet-dispatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Where a SQLite ledger goes when no PostgreSQL ledger is named: mount a volume here to
# keep it (with readOnlyRootFilesystem, only mounted volumes are writable).
WORKDIR /var/lib/onenet-dispatch
USER 10001:10001
ENTRYPOINT ["onenet-dispatch"]
CMD ["--help"]
