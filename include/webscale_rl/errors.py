"""The one base class of errors that a retry cannot fix.

Bad params, unusable corpus files, a failed gate, records that do not add up, a shard
whose rows the warehouse refuses, an LLM server that is down, a warehouse another run
holds: each subclasses FatalError, and the DAG tasks catch it once (webscale_rl.airflow_tasks)
to fail the task at once, with the message, instead of retrying into the same error.
"""


class FatalError(Exception):
    """Retrying cannot fix it: the message says what to fix."""
