"""What every part of ``datamodules`` shares: the errors it raises, its reaches into libraries, rank-zero notes."""
