"""WebUI command-line flags of the Wan extension (they reach modules.shared.cmd_opts)."""


def preload(parser):
    parser.add_argument("--wan-run-now", nargs="*", default=None, metavar="SETTINGS",
                        help="Wan: queue these Deforum settings files when the WebUI has started")
    parser.add_argument("--wan-terminate-after-run-now", action="store_true",
                        help="Wan: exit the WebUI when the --wan-run-now renders have finished")
    parser.add_argument("--wan-models-dir", default=None, metavar="DIR",
                        help="Wan: folder of model weights (default: models/wan in the WebUI)")
