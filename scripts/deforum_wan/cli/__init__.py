"""The top layer: every command of ``python -m deforum_wan``, its shared arguments and its
progress bar. Nothing imports this package."""
