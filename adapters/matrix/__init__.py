"""The Matrix adapter (matrix-nio). ``adapters.matrix.adapter`` holds ``MatrixAdapter`` and its factory; the
sync loop, conversion, formatting and retry policy live beside it."""
