"""``python -m llmbricks`` (what ``torchrun -m llmbricks`` runs)."""

from llmbricks.cli.main import main

if __name__ == "__main__":
    main()
