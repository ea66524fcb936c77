# One image for every numbase process (API, migrations, Dagster webserver/daemon/code location).
# No secrets are baked in: configuration comes from the environment (.env in docker compose).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/home \
    NUMBASE_DATA_DIR=/var/lib/numbase

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY models ./models
COPY orchestration ./orchestration
COPY sensors ./sensors
COPY cli ./cli
COPY dbt_project ./dbt_project
COPY deploy ./deploy
RUN pip install . \
    && mkdir -p "$DAGSTER_HOME" "$NUMBASE_DATA_DIR" /tmp/prometheus \
    && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && useradd --system --home /app numbase \
    && chown -R numbase "$DAGSTER_HOME" "$NUMBASE_DATA_DIR" /tmp/prometheus /app/dbt_project

# The dbt manifest is prepared at build time, not on every code-location load.
RUN dagster-dbt project prepare-and-package --file orchestration/assets/dbt.py

USER numbase
EXPOSE 8000 3000 4000
# X-Forwarded-For is believed only from NUMBASE_TRUSTED_PROXIES (the reverse proxy in front):
# the login throttle and the audit log need the clients' real addresses.
CMD ["sh", "-c", "exec uvicorn api.main:create_app --factory --host 0.0.0.0 --port 8000 --workers 4 --proxy-headers --forwarded-allow-ips \"${NUMBASE_TRUSTED_PROXIES:-127.0.0.1}\""]
