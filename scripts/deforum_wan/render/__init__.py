"""One run: the loop, the carry stream, the run folder, retiming, colour and Deforum output."""
