"""Training recipes (build time only: they may import torch; the runtime never imports this package)."""
