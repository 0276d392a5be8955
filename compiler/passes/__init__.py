"""Compiler passes: plain functions Graph -> Graph, run as an explicit, printed pipeline."""
