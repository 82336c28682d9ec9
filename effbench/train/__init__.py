"""Training runs: the data a training-stage technique trains on, and the bounded training loop."""
