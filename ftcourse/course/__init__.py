"""The course's content: lesson settings, bundled data, exercises' checks, the playground, experiments and demos.

Built on the library (``ftcourse``); imported by the notebooks and the tools (``ftcourse.tools``), never by the library.
"""

__all__: list[str] = []
