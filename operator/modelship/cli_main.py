"""``python -m modelship.cli_main``: the CLI without the console script (tests, debugging)."""

from modelship.cli import main

if __name__ == "__main__":
    main()
