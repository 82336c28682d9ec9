"""Fine-tuning skills: micro-world skills the bundled models were never trained on, to fine-tune them into."""
