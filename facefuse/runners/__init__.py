"""Many images or frames through one engine: batch folders, the live camera path."""
