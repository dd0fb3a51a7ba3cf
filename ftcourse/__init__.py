"""ftcourse: helpers for the fine-tuning course's notebooks, scripts and tests."""

import logging
import warnings

from ftcourse.errors import CourseError

__version__ = "0.1.0"
__all__ = ["CourseError", "__version__"]


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


# Known, harmless noise: bitsandbytes tries to download an optional CPU kernel from the Hub
# (it falls back to its built-in one), and transformers warns about its own deprecated call.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage("kernels-community"))
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
