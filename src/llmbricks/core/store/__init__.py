"""Store: everything llmbricks keeps on disk (run directories and checkpoints, model directories,
the token cache, named data files and downloads) and the one atomic writer they all use. Imports
only the kernel.
"""
