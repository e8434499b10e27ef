"""deforum-wan: Deforum animation schedules rendered with Wan 2.1 / 2.2.

The package never imports the WebUI; ``scripts/wan_tab.py`` is the only host file.
Importing it is cheap: torch and diffusers load only when a render starts.
"""

__version__ = "0.1.0"
