# Multi-stage build: wheels in a builder, a slim non-root runtime that migrates then serves.
FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 espace
WORKDIR /app
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY alembic.ini ./
COPY migrations ./migrations
ENV ESPACE_PROJECT_ROOT=/app PYTHONUNBUFFERED=1
USER espace
EXPOSE 8000
# DATABASE_URL must be set in a container: the embedded Postgres is for laptops and tests.
# One worker process per core unless WEB_CONCURRENCY says otherwise.
CMD ["sh", "-c", "espace-api migrate && exec uvicorn --factory espace_api.main:create_worker_app --host 0.0.0.0 --port 8000 --proxy-headers --no-access-log --workers ${WEB_CONCURRENCY:-$(nproc)}"]
