"""log-analyzer: streaming analysis of App Service HTTP and console logs, per tenant (see README.md)."""
