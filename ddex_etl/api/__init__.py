"""The Python batch API: the same builder as ``etl run``, another face.

``batch.py`` builds releases from dicts, records or DataFrames
(``DDEXBuilder``), ``batch_frames.py`` groups DataFrame rows into releases,
``batch_stream.py`` streams any source through the builder
(``StreamingBatchProcessor``). Users import them from ``ddex_etl``.
"""
