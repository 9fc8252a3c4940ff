"""The streaming data path: dump -> compress -> hash -> storage, and back."""
