"""What a reader sees: figures, their theme, and summaries of a run's tables."""
