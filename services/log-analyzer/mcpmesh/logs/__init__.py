"""log-analyzer: streaming analysis of App Service HTTP and console logs, per tenant (see README.md)."""

from mcpmesh.logs.analysis import Analysis, Limits, LineSplitter
from mcpmesh.logs.compare import compare
from mcpmesh.logs.settings import LogsSettings

__all__ = ["Analysis", "Limits", "LineSplitter", "LogsSettings", "compare"]
