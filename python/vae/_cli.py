"""The `vae` command of the installed package: the binary built with it (vae/bin/vae)."""

import os
import sys


def main():
    binary = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "vae")
    if not os.access(binary, os.X_OK):
        sys.stderr.write("vae: error: the package holds no vae binary at %s; reinstall it (pip install .)\n" % binary)
        sys.exit(1)
    os.execv(binary, [binary] + sys.argv[1:])


if __name__ == "__main__":
    main()
