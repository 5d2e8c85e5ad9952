"""The Python batch API: the same builder as ``etl run``, another face.

``batch.py`` builds releases from dicts, records or DataFrames
(``DDEXBuilder``), ``frame_rows.py`` finds a DataFrame's releases with one
vectorized pass and ships their rows to the workers as frame slices,
``batch_frames.py`` groups a stream of DataFrames into releases,
``batch_stream.py`` streams any source through the builder
(``StreamingBatchProcessor``), ``engines.py`` picks where chunks run (local
worker processes, or the Dask executor ``etl run`` uses). Users import them
from ``ddex_etl``.
"""
