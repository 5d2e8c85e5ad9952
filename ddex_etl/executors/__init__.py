"""Where chunks of work run: worker processes on this machine, or a Dask cluster.

The run (``ddex_etl.run``) and the Python batch API (``ddex_etl.api``) both
hand their chunks to these engines; the engines know nothing of runs,
releases or messages, only "call this importable function with these
arguments, somewhere".
"""
