"""Cutting the prepared tokens into contiguous streams for truncated BPTT, on the host or the device."""
