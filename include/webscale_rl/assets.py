"""Every Airflow Asset URI of the project, in one place (producers and consumers import it)."""

# The accepted-QA export of a run; published by `webscale_rl`, consumed by `webscale_rl_train`
# once the export stage exists.
EXPORT_ASSET_URI = "file://webscale_rl/exports"
