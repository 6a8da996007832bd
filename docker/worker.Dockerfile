# GeoFlora GPU worker: Celery running the meta-tile cascade on CUDA.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-mod-spatialite \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend/ backend/
COPY inference/ inference/
COPY tiles/ tiles/
# torch comes from the CUDA base image; install the rest without replacing it.
RUN sed -i 's/"torch==2.13.0",//' pyproject.toml && pip install --no-cache-dir .
ENV GEOFLORA_DATA_DIR=/data
CMD ["celery", "-A", "inference.celery_app:celery_app", "worker", "--loglevel=INFO", "--concurrency=1"]
