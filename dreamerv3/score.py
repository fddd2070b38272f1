"""The old path of `python -m dreamerv3.tools.score`, kept for one release."""

from .tools.score import main

if __name__ == '__main__':
    main()
