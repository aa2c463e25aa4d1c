"""Webscale-RL data engine: stages, warehouse and gates, importable without Airflow."""
