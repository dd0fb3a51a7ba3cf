"""Course tooling: the notebook runner, student copies of the exercises, grading, and the ``ftcourse`` command."""

__all__: list[str] = []
