"""Tasks: what one does with a model once it exists (generation, evaluation, classification,
instruction data, adapter merging, smoke checks). Imports the kernel, the store and train.
"""
