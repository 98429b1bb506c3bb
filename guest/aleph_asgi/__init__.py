"""aleph_asgi: a small ASGI 3 server on the Python standard library (asyncio).

Run it as ``python3 -m aleph_asgi --app module:app --app-dir DIR``; see docs/asgi.md.
"""

from .limits import Limits
from .server import serve

__all__ = ["Limits", "serve"]
__version__ = "0.1.0"
