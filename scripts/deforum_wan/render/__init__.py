"""One run: the loop, the carry stream, the run folder, retiming, colour, Deforum's camera warps
and Deforum output."""
