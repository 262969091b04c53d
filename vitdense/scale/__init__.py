"""At scale: Ray Data jobs over a data set (``jobs``: ``extract_dataset``, ``map_sets``) and the
stored descriptor data set they write (``store``: shards + manifest, ``open_descriptors``; no Ray)."""
from vitdense.scale.jobs import RayUnavailableError, extract_dataset, map_sets, ray_session, require_ray  # noqa: F401
from vitdense.scale.store import DescriptorStore, open_descriptors, read_manifest  # noqa: F401
