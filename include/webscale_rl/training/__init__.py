"""RL-training helpers for the exported data; standard library only, importable without Airflow."""
