"""``python -m ai.backend.common``: the ``backend.ai-common`` command."""

from .cli.main import main

if __name__ == "__main__":
    main()
