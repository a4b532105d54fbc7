"""PyTorch module definitions only: no I/O, no weight loading."""
