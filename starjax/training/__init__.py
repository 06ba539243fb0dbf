"""Fine-tuning: optimizer.py (AdamW + schedule), step.py (pure jitted train step), data.py (packing, order)."""
