"""Environment adapters, one module per suite; heavy imports stay inside each module."""
