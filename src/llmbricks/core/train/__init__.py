"""Train: the loop engine every trainer composes, with its optimizer and schedule, batches and
splits, freeze policies, data parallelism, loss plots and the session that starts or resumes a
run. Imports the kernel and the store.
"""
