"""The proxies' request log: `serving.request_log.RecordLog`, the server's own writer.

The request thread only draws the sample and enqueues the bytes it already holds (a gRPC
message, a REST body); the writer thread turns them into a `PredictionLog`
(`serving.front.records`) and writes it with the server's rotating, size-bounded TFRecord files.
"""

from serving.request_log import Builder, RecordLog

__all__ = ["Builder", "RecordLog"]
