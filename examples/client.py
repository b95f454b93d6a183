#!/usr/bin/env python3
"""A Python client for the cyclegand daemon, built on the plug-in's socket module.

    examples/client.py directions
    examples/client.py translate cat.jpg cat-vintage.jpg modern2vintage   # inline: bytes over the socket
    examples/client.py status
    examples/client.py subscribe

The socket: $CYCLEGAND_SOCKET, else $XDG_RUNTIME_DIR/cyclegand.sock. Standard library only.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "gimp", "cyclegand"))
from cyclegand_client import Client, DaemonError  # noqa: E402


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 64
    command = argv[1]
    try:
        with Client() as daemon:
            if command == "translate" and len(argv) == 5:
                source, target, direction = argv[2:5]
                with open(source, "rb") as f:
                    image = f.read()
                extension = os.path.splitext(target)[1].lower().lstrip(".")
                fmt = {"jpg": "jpeg", "tif": "tiff"}.get(extension, extension) or None
                reply, result = daemon.translate_bytes(image, direction, name=os.path.basename(source), format=fmt)
                with open(target, "wb") as f:
                    f.write(result)
                print("%s: %dx%d in %.0f ms" % (target, reply["width"], reply["height"], reply["ms"]))
            elif command == "subscribe":
                for event in daemon.subscribe():
                    print(json.dumps(event), flush=True)
            elif command in ("ping", "version", "status", "models", "directions", "jobs", "reload", "shutdown"):
                reply, _ = daemon.call(command)
                print(json.dumps(reply, indent=2))
            else:
                print(__doc__.strip(), file=sys.stderr)
                return 64
    except DaemonError as error:
        print("cyclegand: %s: %s" % (error.code, error.message), file=sys.stderr)
        return 1
    except ConnectionError as error:
        print("cyclegand: %s" % error, file=sys.stderr)
        return 69
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
