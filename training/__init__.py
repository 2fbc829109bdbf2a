"""Training tools: dataset import, Keras fit, evaluation, TFLite export (console script emotion-train)."""
