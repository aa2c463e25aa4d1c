"""Every Airflow Asset of the project, in one place (producers and consumers import it)."""

from airflow.sdk import Asset

# The accepted-QA export of a `webscale_rl` run (files under $WEBSCALE_RL_DATA_DIR/exports/);
# `webscale_rl_train` is scheduled on it.
EXPORT_ASSET = Asset(name="webscale_rl_export", uri="file:///webscale_rl/exports")

# New documents taken in from the landing directory by `webscale_rl_ingest`; the event's
# extra names the files. `webscale_rl` is scheduled on it.
NEW_DOCUMENTS_ASSET = Asset(name="webscale_rl_new_documents", uri="file:///webscale_rl/landing")
