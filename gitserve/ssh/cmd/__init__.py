"""The ssh commands gitserve itself offers, one module per command; `base` is what they are
made of. gitserve.app builds the one table (`builtin` lists these)."""
