"""effbench's own version, stored with every run: importable by every room without the package facade."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("effbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
