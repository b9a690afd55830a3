"""infer_distill: the producer of INFER-distilled datasets.

Teachers (:mod:`infer_distill.teachers`) and dataset sources (:mod:`infer_distill.sources`) are
registries; the compensator optimization, static labels and writing live in the other modules.
"""

from __future__ import annotations

from infer_data import __version__ as __version__

from .sources import Source as Source
from .sources import create_source as create_source
from .sources import list_sources as list_sources
from .teachers import create_teacher as create_teacher
from .teachers import list_teachers as list_teachers
from .teachers import load_teacher as load_teacher
from .teachers import save_teacher as save_teacher

__all__ = [
    "Source", "__version__", "create_source", "create_teacher", "list_sources", "list_teachers", "load_teacher", "save_teacher",
]
