"""asdfd: data-free knowledge distillation of transformer text classifiers (a language-model prior, and AS-DFD)."""

from .config import DistillConfig, TeacherConfig
from .distiller import Distiller, DistillResult, distill
from .errors import UserError

__version__ = "0.1.0"
__all__ = ["DistillConfig", "DistillResult", "Distiller", "TeacherConfig", "UserError", "distill", "__version__"]
