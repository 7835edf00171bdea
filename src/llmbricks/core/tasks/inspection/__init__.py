"""Looking inside a model: attention weights per layer and head, what each positional encoding
does, token embeddings in 2-D (``llmbricks inspect``). Each picture is a PNG written atomically;
each function also returns what it drew, for use from Python.
"""

from __future__ import annotations

from .attention import attention_weights, inspect_attention, parse_indices, plot_attention
from .embeddings import inspect_embeddings, pca_2d, plot_embeddings, token_counts
from .figure import Picture
from .positional import describe_positional, inspect_positional, plot_positional, positional_views

__all__ = ["Picture", "attention_weights", "describe_positional", "inspect_attention",
           "inspect_embeddings", "inspect_positional", "parse_indices", "pca_2d",
           "plot_attention", "plot_embeddings", "plot_positional", "positional_views",
           "token_counts"]
