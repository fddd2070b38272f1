"""The old path of `python -m dreamerv3.tools.plot`, kept for one release."""

from .tools.plot import main

if __name__ == '__main__':
    main()
