"""Many images or frames through one engine: batches (on this machine or on Ray), the live
camera path."""
