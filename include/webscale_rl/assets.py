"""Every Airflow Asset of the project, in one place (producers and consumers import it)."""

from airflow.sdk import Asset

# The accepted-QA export of a `webscale_rl` run (files under $WEBSCALE_RL_DATA_DIR/exports/);
# `webscale_rl_train` is scheduled on it.
EXPORT_ASSET = Asset(name="webscale_rl_export", uri="file:///webscale_rl/exports")
