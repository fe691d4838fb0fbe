"""peftlab: a reproducible study of supervised fine-tuning methods for small LLMs."""

__version__ = "0.1.0"
