__version__ = "0.1.0"

from .core import *
from .engine import *
from .callbacks import *
from .wrapper import *
from .diagnostics import *
from .export import *
