"""``python -m babyemo``."""

from babyemo.cli import main

if __name__ == "__main__":
    main()
